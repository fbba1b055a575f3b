"""The specialist CNN, its masked loss and its pixel RMSE metric, in backend-agnostic Keras 3.

The network's last trainable layer predicts standardised coordinates (zero mean, unit spread
per coordinate over the training faces); a fixed ``Standardised`` layer maps them to pixels, so
the saved model takes raw faces and returns pixels, and starts out predicting the mean face.
Missing keypoints are NaN and count for nothing in the loss or the metric, so a specialist
learns from every face that has any of its coordinates.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from .config import ModelConfig
from .schema import IMAGE_SIZE


@keras.saving.register_keras_serializable(package="fkp")
class Standardised(layers.Layer):
    """Standardised coordinates -> pixels: ``x * spread + mean``, fixed per coordinate."""

    def __init__(self, mean, spread, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.spread = [float(v) for v in mean], [float(v) for v in spread]

    def call(self, x):
        return x * ops.convert_to_tensor(self.spread, x.dtype) + ops.convert_to_tensor(self.mean, x.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "spread": self.spread}


def target_statistics(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate mean and spread of pixel targets (N, 2K) with NaN; centre and 10 px if unlabelled."""
    labelled = ~np.isnan(targets).all(axis=0)
    mean = np.where(labelled, np.nanmean(np.where(labelled, targets, 0.0), axis=0), IMAGE_SIZE / 2)
    spread = np.where(labelled, np.nanstd(np.where(labelled, targets, 0.0), axis=0), 10.0)
    return mean, np.maximum(spread, 1.0)


def _mask_and_error(y_true, y_pred):
    labelled = ops.logical_not(ops.isnan(y_true))
    error = ops.where(labelled, y_pred - ops.where(labelled, y_true, 0.0), 0.0)
    return ops.cast(labelled, y_pred.dtype), error


@keras.saving.register_keras_serializable(package="fkp")
class MaskedMeanSquaredError(keras.losses.Loss):
    """Mean squared error over the labelled (non-NaN) coordinates of a batch."""

    def __init__(self, name="masked_mse", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        labelled, error = _mask_and_error(y_true, y_pred)
        # Per-face sums scaled so the batch mean equals sum(error^2) / (labelled count).
        batch = ops.cast(ops.shape(y_true)[0], y_pred.dtype)
        return ops.sum(ops.square(error), axis=-1) * batch / ops.maximum(ops.sum(labelled), 1.0)


@keras.saving.register_keras_serializable(package="fkp")
class PixelRMSE(keras.metrics.Metric):
    """RMSE in pixels over every labelled coordinate seen, pooled like the leaderboard's."""

    def __init__(self, name="rmse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.squared = self.add_variable(shape=(), initializer="zeros", name="squared")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labelled, error = _mask_and_error(y_true, y_pred)
        self.squared.assign_add(ops.sum(ops.square(error)))
        self.count.assign_add(ops.sum(labelled))

    def result(self):
        return ops.sqrt(self.squared / ops.maximum(self.count, 1.0))

    def reset_state(self):
        self.squared.assign(0.0)
        self.count.assign(0.0)


def build_model(
    target_mean: np.ndarray, target_spread: np.ndarray, config: ModelConfig,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule, name: str = "specialist",
) -> keras.Model:
    """A VGG-style CNN: conv blocks (conv-BN-ReLU x n, max-pool), a dense head, pixels out."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    x = layers.Rescaling(1 / 255)(inputs)
    if config.input_downsample > 1:
        x = layers.AveragePooling2D(config.input_downsample, name="downsample")(x)
    for block, filters in enumerate(config.filters):
        for conv in range(config.convs_per_block):
            x = layers.Conv2D(
                filters, config.kernel_size, padding="same", use_bias=not config.batch_norm,
                name=f"block{block}_conv{conv}",
            )(x)
            if config.batch_norm:
                x = layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{conv}")(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(config.dense_units, activation="relu", name="head")(x)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(len(target_mean), kernel_initializer="zeros", name="standardised")(x)
    keypoints = Standardised(target_mean, target_spread, name="keypoints")(x)
    model = keras.Model(inputs, keypoints, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=MaskedMeanSquaredError(),
        metrics=[PixelRMSE()],
    )
    return model
