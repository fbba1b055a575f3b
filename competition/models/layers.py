"""Layers shared by the model families, serializable with their saved models."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from ..schema import FIRST_PIXEL_CENTRE, IMAGE_SIZE


def conv_block(x, filters: int, convs: int, kernel_size: int, batch_norm: bool, prefix: str):
    """``convs`` times conv-BN-ReLU at one resolution (layers ``<prefix>_conv<i>``, ``<prefix>_bn<i>``)."""
    for conv in range(convs):
        x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm, name=f"{prefix}_conv{conv}")(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn{conv}")(x)
        x = layers.Activation("relu")(x)
    return x


def cell_centres(cells: int, image_size: int = IMAGE_SIZE, first_pixel_centre: float = FIRST_PIXEL_CENTRE):
    """Where the centres of ``cells`` equal cells across an ``image_size`` face lie in the labels' coordinates
    (pixel i's centre at i + ``first_pixel_centre``): cell j spans pixels [j, j + 1) * image_size / cells."""
    return (np.arange(cells) + 0.5) * (image_size / cells) - 0.5 + first_pixel_centre


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
class ShiftFaces(layers.Layer):
    """Faces (N, H, W, C) with their content moved ``dx`` pixels right and ``dy`` down, the edges replicated:
    shift test-time augmentation inside a graph (``predict.shifted_faces``)."""

    def __init__(self, dx, dy, **kwargs):
        super().__init__(**kwargs)
        self.dx, self.dy = int(dx), int(dy)

    @staticmethod
    def _along(faces, step, axis):
        if step == 0:
            return faces
        size = faces.shape[axis]
        if step > 0:  # the first row/column repeated in front
            edge = ops.take(faces, [0] * step, axis=axis)
            return ops.concatenate([edge, ops.take(faces, list(range(size - step)), axis=axis)], axis=axis)
        edge = ops.take(faces, [size - 1] * -step, axis=axis)
        return ops.concatenate([ops.take(faces, list(range(-step, size)), axis=axis), edge], axis=axis)

    def call(self, faces):
        return self._along(self._along(faces, self.dy, 1), self.dx, 2)

    def get_config(self):
        return {**super().get_config(), "dx": self.dx, "dy": self.dy}


@keras.saving.register_keras_serializable(package="fkp")
class MovePoints(layers.Layer):
    """Keypoints (N, 2K) moved by (``dx``, ``dy``) pixels: a shifted face's points moved back."""

    def __init__(self, dx, dy, **kwargs):
        super().__init__(**kwargs)
        self.dx, self.dy = float(dx), float(dy)

    def call(self, points):
        pairs = ops.reshape(points, (-1, points.shape[-1] // 2, 2))
        return ops.reshape(pairs + ops.convert_to_tensor([self.dx, self.dy], points.dtype), (-1, points.shape[-1]))

    def get_config(self):
        return {**super().get_config(), "dx": self.dx, "dy": self.dy}


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


@keras.saving.register_keras_serializable(package="fkp")
class MeanFacePrior(layers.Layer):
    """Adds a learned logit map per keypoint to heatmaps (N, S, S, K), initialised to the log-density of a
    Gaussian at the keypoint's mean position (its spread, at least one cell), so an untrained heatmap model
    predicts the mean face, as the regression family's does."""

    def __init__(self, mean, spread, image_size=IMAGE_SIZE, first_pixel_centre=FIRST_PIXEL_CENTRE, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.spread = [float(v) for v in mean], [float(v) for v in spread]
        self.image_size, self.first_pixel_centre = int(image_size), float(first_pixel_centre)

    def build(self, input_shape):
        height, width, keypoints = input_shape[1:]
        mean, spread = np.reshape(self.mean, (keypoints, 2)), np.reshape(self.spread, (keypoints, 2))
        spread = np.maximum(spread, self.image_size / width)
        x = cell_centres(width, self.image_size, self.first_pixel_centre)[None, :, None]
        y = cell_centres(height, self.image_size, self.first_pixel_centre)[:, None, None]
        prior = -((x - mean[:, 0]) ** 2 / (2 * spread[:, 0] ** 2) + (y - mean[:, 1]) ** 2 / (2 * spread[:, 1] ** 2))
        self.logits = self.add_weight(shape=prior.shape, name="logits",
                                      initializer=lambda shape, dtype=None: ops.convert_to_tensor(prior, dtype))

    def call(self, heatmaps):
        return heatmaps + ops.cast(self.logits, heatmaps.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "spread": self.spread, "image_size": self.image_size,
                "first_pixel_centre": self.first_pixel_centre}


@keras.saving.register_keras_serializable(package="fkp")
class SoftArgmax(layers.Layer):
    """Heatmaps (N, S, S, K) -> (N, 2K) coordinates, x then y per keypoint, in the labels' pixels: each map's
    softmax over its S*S cells (logits times ``beta``) weighs the cells' centres (integral regression), so
    the decoding is differentiable and sub-cell. The maps cover the whole ``image_size`` face."""

    def __init__(self, beta=1.0, image_size=IMAGE_SIZE, first_pixel_centre=FIRST_PIXEL_CENTRE, **kwargs):
        super().__init__(**kwargs)
        self.beta, self.image_size, self.first_pixel_centre = float(beta), int(image_size), float(first_pixel_centre)

    def call(self, heatmaps):
        height, width, keypoints = heatmaps.shape[1:]
        logits = ops.reshape(ops.transpose(heatmaps, (0, 3, 1, 2)), (-1, keypoints, height * width))
        weights = ops.reshape(ops.softmax(logits * self.beta, axis=-1), (-1, keypoints, height, width))
        x = cell_centres(width, self.image_size, self.first_pixel_centre)
        y = cell_centres(height, self.image_size, self.first_pixel_centre)
        expected_x = ops.sum(ops.sum(weights, axis=2) * ops.convert_to_tensor(x, weights.dtype), axis=-1)
        expected_y = ops.sum(ops.sum(weights, axis=3) * ops.convert_to_tensor(y, weights.dtype), axis=-1)
        return ops.reshape(ops.stack([expected_x, expected_y], axis=-1), (-1, 2 * keypoints))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "image_size": self.image_size,
                "first_pixel_centre": self.first_pixel_centre}
