"""Layers shared by the model families, serializable with their saved models."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from ..schema import FIRST_PIXEL_CENTRE, IMAGE_SIZE


def conv_block(x, filters: int, convs: int, kernel_size: int, batch_norm: bool, prefix: str):
    """``convs`` times conv-BN-ReLU (layers ``<prefix>_conv<i>``, ``<prefix>_bn<i>``)."""
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
    shift test-time augmentation inside a graph (``tta.tta_faces``)."""

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
        self.logits = self.add_weight(
            shape=prior.shape, name="logits", initializer=lambda shape, dtype=None: ops.convert_to_tensor(prior, dtype)
        )

    def call(self, heatmaps):
        return heatmaps + ops.cast(self.logits, heatmaps.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "mean": self.mean,
            "spread": self.spread,
            "image_size": self.image_size,
            "first_pixel_centre": self.first_pixel_centre,
        }


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
        return {
            **super().get_config(),
            "beta": self.beta,
            "image_size": self.image_size,
            "first_pixel_centre": self.first_pixel_centre,
        }


@keras.saving.register_keras_serializable(package="fkp")
class Reframing(layers.Layer):
    """Per face, from its keypoints (N, 2K), the similarity transform (N, 4) = (c, s, bx, by), taking a point p to
    [[c, -s], [s, c]] p + (bx, by), that moves its framing (the eye centres' distance, their line's angle and
    their midpoint, the eyes at ``eyes`` among the keypoints) the least way into the given ranges: the
    identity for a face framed within them."""

    def __init__(self, eyes, eye_distance, angle, midpoint_x, midpoint_y, **kwargs):
        super().__init__(**kwargs)
        self.eyes = [int(i) for i in eyes]
        self.eye_distance, self.angle = [float(v) for v in eye_distance], [float(v) for v in angle]
        self.midpoint_x, self.midpoint_y = [float(v) for v in midpoint_x], [float(v) for v in midpoint_y]

    def call(self, points):
        pairs = ops.reshape(points, (-1, points.shape[-1] // 2, 2))
        left, right = pairs[:, self.eyes[0]], pairs[:, self.eyes[1]]
        line, midpoint = left - right, (left + right) / 2
        distance = ops.maximum(ops.sqrt(ops.sum(line * line, axis=-1)), 1e-3)
        angle = ops.arctan2(line[:, 1], line[:, 0])
        scale = ops.clip(distance, *self.eye_distance) / distance
        turn = ops.clip(angle, *self.angle) - angle
        c, s = scale * ops.cos(turn), scale * ops.sin(turn)
        x, y = midpoint[:, 0], midpoint[:, 1]
        bx = ops.clip(x, *self.midpoint_x) - (c * x - s * y)
        by = ops.clip(y, *self.midpoint_y) - (s * x + c * y)
        return ops.stack([c, s, bx, by], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 4)

    def get_config(self):
        return {
            **super().get_config(),
            "eyes": self.eyes,
            "eye_distance": self.eye_distance,
            "angle": self.angle,
            "midpoint_x": self.midpoint_x,
            "midpoint_y": self.midpoint_y,
        }


def _inverse(transform):
    """The (c, s, bx, by) similarity's inverse, as its rotation-scale part (c', s') and the translation it undoes."""
    c, s, bx, by = (transform[:, i] for i in range(4))
    norm = c * c + s * s
    return c / norm, -s / norm, bx, by


@keras.saving.register_keras_serializable(package="fkp")
class ReframedFaces(layers.Layer):
    """Faces (N, H, W, C) re-framed by ``Reframing``'s transforms (N, 4): each output pixel takes the input face
    bilinearly at the transform's inverse, the edges replicated (label pixels: pixel i's centre at
    i + ``first_pixel_centre``)."""

    def __init__(self, first_pixel_centre=FIRST_PIXEL_CENTRE, **kwargs):
        super().__init__(**kwargs)
        self.first_pixel_centre = float(first_pixel_centre)

    def call(self, inputs):
        faces, transform = inputs
        height, width, channels = faces.shape[1:]
        grid_y, grid_x = np.meshgrid(
            np.arange(height, dtype="float32"), np.arange(width, dtype="float32"), indexing="ij"
        )
        c, s, bx, by = (ops.reshape(part, (-1, 1)) for part in _inverse(transform))
        dx = ops.convert_to_tensor(grid_x.reshape(1, -1) + self.first_pixel_centre, faces.dtype) - bx
        dy = ops.convert_to_tensor(grid_y.reshape(1, -1) + self.first_pixel_centre, faces.dtype) - by
        x = ops.clip(c * dx - s * dy - self.first_pixel_centre, 0, width - 1)  # (N, H*W) source pixels
        y = ops.clip(s * dx + c * dy - self.first_pixel_centre, 0, height - 1)
        x0, y0 = ops.floor(x), ops.floor(y)
        wx, wy = ops.expand_dims(x - x0, -1), ops.expand_dims(y - y0, -1)
        x1, y1 = ops.minimum(x0 + 1, width - 1), ops.minimum(y0 + 1, height - 1)
        flat = ops.reshape(faces, (-1, height * width, channels))

        def at(row, column):
            index = ops.expand_dims(ops.cast(row * width + column, "int32"), -1)
            return ops.take_along_axis(flat, ops.repeat(index, channels, axis=-1), axis=1)

        top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
        bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
        return ops.reshape(top * (1 - wy) + bottom * wy, (-1, height, width, channels))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "first_pixel_centre": self.first_pixel_centre}


@keras.saving.register_keras_serializable(package="fkp")
class ReframedPointsBack(layers.Layer):
    """Keypoints (N, 2K) predicted on re-framed faces, mapped back onto the faces by the inverse of their
    ``Reframing`` transforms (N, 4)."""

    def call(self, inputs):
        points, transform = inputs
        c, s, bx, by = (ops.reshape(part, (-1, 1)) for part in _inverse(transform))
        pairs = ops.reshape(points, (-1, points.shape[-1] // 2, 2))
        dx, dy = pairs[..., 0] - bx, pairs[..., 1] - by
        return ops.reshape(ops.stack([c * dx - s * dy, s * dx + c * dy], axis=-1), (-1, points.shape[-1]))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="fkp")
class MixPoints(layers.Layer):
    """Two answers (N, D) mixed: (1 - ``weight``) of the first and ``weight`` of the second."""

    def __init__(self, weight, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, inputs):
        first, second = inputs
        return first * (1 - self.weight) + second * self.weight

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@keras.saving.register_keras_serializable(package="fkp")
class WeightedSum(layers.Layer):
    """K answers (N, C) combined per coordinate: sum_k answer_k * coef[:, k] + intercept (a blend's weights)."""

    def __init__(self, coef, intercept, **kwargs):
        super().__init__(**kwargs)
        self.coef = [[float(w) for w in row] for row in coef]  # (C, K)
        self.intercept = [float(b) for b in intercept]  # (C,)

    def call(self, inputs):
        coef = ops.convert_to_tensor(self.coef, dtype=inputs[0].dtype)
        total = ops.convert_to_tensor(self.intercept, dtype=inputs[0].dtype)
        for k, answer in enumerate(inputs):
            total = total + answer * coef[:, k]
        return total

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "coef": self.coef, "intercept": self.intercept}


@keras.saving.register_keras_serializable(package="fkp")
class StackViews(layers.Layer):
    """V views (N, H, W, C) of the same faces as one batch (V * N, H, W, C), view after view, so a network answers
    every view in one pass (``UnstackViews`` parts its answers again)."""

    def call(self, views):
        return ops.concatenate(list(views), axis=0)

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[0][1:])


@keras.saving.register_keras_serializable(package="fkp")
class UnstackViews(layers.Layer):
    """A network's answers (V * N, D) on ``StackViews``' batch, back to each of the ``views`` views' (N, D)."""

    def __init__(self, views, **kwargs):
        super().__init__(**kwargs)
        self.views = int(views)

    def call(self, answers):
        return ops.split(answers, self.views, axis=0)

    def compute_output_shape(self, input_shape):
        return [(None, *input_shape[1:])] * self.views

    def get_config(self):
        return {**super().get_config(), "views": self.views}
