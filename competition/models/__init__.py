"""Model families, picked by a config's ``model.family``.

Each family is one module here holding its [model] config table (a dataclass) and ``build``, the
network from faces to pixel coordinates with its decoding to pixels; ``loss`` is the family's
training loss. Shared layers, losses and metrics sit beside them (``layers``, ``losses``). A family
module imports Keras only inside its functions, so any process can read and validate a config
without loading a backend.
"""

from __future__ import annotations

import numpy as np

from ..schema import IMAGE_SIZE
from . import heatmap, regression
from .base import ModelConfig

FAMILIES = {"regression": regression, "heatmap": heatmap}


def family_config(family: str) -> ModelConfig:
    """The default [model] table of a family."""
    return FAMILIES[family].Config()


def target_statistics(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate mean and spread of pixel targets (N, 2K) with NaN; centre and 10 px if unlabelled.
    Every family's ``build`` receives them (the regression head predicts in these units; the heatmap
    family's prior starts at the mean)."""
    labelled = ~np.isnan(targets).all(axis=0)
    mean = np.where(labelled, np.nanmean(np.where(labelled, targets, 0.0), axis=0), IMAGE_SIZE / 2)
    spread = np.where(labelled, np.nanstd(np.where(labelled, targets, 0.0), axis=0), 10.0)
    return mean, np.maximum(spread, 1.0)


def optimizer(learning_rate, weight_decay: float = 0.0):
    """Adam with Keras' decoupled ``weight_decay`` (AdamW's update; 0: none) of the kernels only: a bias or a
    batch-norm scale pulled towards 0 regularises nothing."""
    import keras

    adam = keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None)
    adam.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return adam


def build_model(
    config: ModelConfig,
    target_mean: np.ndarray,
    target_spread: np.ndarray,
    learning_rate,
    name: str = "specialist",
    weight_decay: float = 0.0,
):
    """A compiled model of ``config.family``: raw 96x96 faces in, pixel coordinates out; ``optimizer``, the
    family's loss and the pixel RMSE metric over labelled coordinates."""
    from .losses import PixelRMSE

    family = FAMILIES[config.family]
    model = family.build(config, target_mean, target_spread, name=name)
    model.compile(optimizer=optimizer(learning_rate, weight_decay), loss=family.loss(), metrics=[PixelRMSE()])
    return model
