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


@keras.saving.register_keras_serializable(package="fkp")
class MirrorFaces(layers.Layer):
    """Faces (N, H, W, C) mirrored left to right, for flip test-time augmentation inside a graph."""

    def call(self, faces):
        return ops.flip(faces, axis=2)


@keras.saving.register_keras_serializable(package="fkp")
class MirroredPointsBack(layers.Layer):
    """A mirrored face's keypoints (N, 2K) mapped back onto the face: left/right partners swapped
    (``permutation``), x -> ``axis`` - x."""

    def __init__(self, permutation, axis, **kwargs):
        super().__init__(**kwargs)
        self.permutation, self.axis = [int(i) for i in permutation], float(axis)

    def call(self, points):
        pairs = ops.take(ops.reshape(points, (-1, len(self.permutation), 2)), self.permutation, axis=1)
        mirrored_x = ops.convert_to_tensor([-1.0, 1.0], points.dtype)
        offset = ops.convert_to_tensor([self.axis, 0.0], points.dtype)
        return ops.reshape(pairs * mirrored_x + offset, (-1, 2 * len(self.permutation)))

    def get_config(self):
        return {**super().get_config(), "permutation": self.permutation, "axis": self.axis}


@keras.saving.register_keras_serializable(package="fkp")
class TakeColumns(layers.Layer):
    """The chosen columns of (N, D), in order: which network answers each coordinate."""

    def __init__(self, columns, **kwargs):
        super().__init__(**kwargs)
        self.columns = [int(i) for i in columns]

    def call(self, x):
        return ops.take(x, self.columns, axis=1)

    def get_config(self):
        return {**super().get_config(), "columns": self.columns}
