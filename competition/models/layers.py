"""Layers shared by the model families, serializable with their saved models."""

from __future__ import annotations

import keras
from keras import layers, ops


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
