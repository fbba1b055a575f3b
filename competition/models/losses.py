"""The masked training loss and the pixel RMSE metric, shared by every family (all output pixels).

Missing keypoints are NaN and count for nothing in the loss or the metric, so a specialist learns
from every face that has any of its coordinates.
"""

from __future__ import annotations

import keras
from keras import ops


def _mask_and_error(y_true, y_pred):
    labelled = ops.logical_not(ops.isnan(y_true))
    error = ops.where(labelled, y_pred - ops.where(labelled, y_true, 0.0), 0.0)
    return ops.cast(labelled, y_pred.dtype), error


@keras.saving.register_keras_serializable(package="fkp")
class MaskedMeanSquaredError(keras.losses.Loss):
    """Mean squared error over the labelled (non-NaN) coordinates of a batch. Kept per coordinate, so a
    (batch, 2K) sample weight weighs each one (a teacher's filled labels less than true ones, `fkp cv` with
    ``distill.teachers``): sum(weight * error^2) / (labelled count)."""

    def __init__(self, name="masked_mse", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        labelled, error = _mask_and_error(y_true, y_pred)
        # Keras divides the (weighted) sum by the element count (batch x 2K); scale that to the labelled count.
        elements = ops.cast(ops.size(y_true), y_pred.dtype)
        return ops.square(error) * elements / ops.maximum(ops.sum(labelled), 1.0)


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
