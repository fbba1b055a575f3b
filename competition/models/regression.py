"""The regression family: a VGG-style CNN whose dense head predicts the coordinates directly.

The last trainable layer predicts standardised coordinates (zero mean, unit spread per coordinate
over the training faces); a fixed ``Standardised`` layer decodes them to pixels, so the saved
model takes raw faces, returns pixels, and starts out predicting the mean face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..ranges import setting
from ..schema import IMAGE_SIZE
from .base import ModelConfig


@dataclass
class Config(ModelConfig):
    family: str = "regression"
    filters: list[int] = setting([32, 64, 128, 256], low=1, high=4096, nonempty=True)  # one conv block each
    convs_per_block: int = setting(2, low=1, high=16)
    kernel_size: int = setting(3, low=1, high=IMAGE_SIZE)
    batch_norm: bool = True
    dropout: float = setting(0.3, low=0, below=1)
    dense_units: int = setting(512, low=1, high=65_536)
    # average-pool the 96x96 face by this factor first (2: 48x48, a quarter of the FLOPs)
    input_downsample: int = setting(1, divides=IMAGE_SIZE)

    def check(self, source: str, key: str) -> None:
        """Each block halves the face: the blocks must leave at least one pixel."""
        side = IMAGE_SIZE // self.input_downsample
        if side >> len(self.filters) < 1:
            raise InputError(
                source,
                f"keys '{key}.filters' ({len(self.filters)} blocks) and "
                f"'{key}.input_downsample' (a {side}x{side} face) do not fit: the face allows "
                f"at most {side.bit_length() - 1} blocks, each halving it",
            )


def loss():
    """Mean squared error in pixels over the labelled coordinates."""
    from .losses import MaskedMeanSquaredError

    return MaskedMeanSquaredError()


def build(config: Config, target_mean: np.ndarray, target_spread: np.ndarray, name: str = "specialist"):
    """Conv blocks (conv-BN-ReLU x n, each halving the face by max-pooling), a dense head,
    standardised coordinates decoded to pixels."""
    import keras
    from keras import layers

    from .layers import Standardised, conv_block

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    x = layers.Rescaling(1 / 255)(inputs)
    if config.input_downsample > 1:
        x = layers.AveragePooling2D(config.input_downsample, name="downsample")(x)
    for block, filters in enumerate(config.filters):
        x = conv_block(x, filters, config.convs_per_block, config.kernel_size, config.batch_norm, f"block{block}")
        x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(config.dense_units, activation="relu", name="head")(x)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(len(target_mean), kernel_initializer="zeros", name="standardised")(x)
    keypoints = Standardised(target_mean, target_spread, name="keypoints")(x)
    return keras.Model(inputs, keypoints, name=name)
