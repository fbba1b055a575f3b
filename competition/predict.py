"""Predicting keypoints in pixels, with optional test-time augmentation: flips, whole-pixel shifts, and
re-framing (each face predicted again after moving its framing into the middle of the training faces')."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from .augment import mirror_points
from .models.layers import MixPoints, ReframedFaces, ReframedPointsBack, Reframing
from .schema import MIRROR_AXIS, Specialist

# Faces per forward pass (prediction and validation): a batch of 256 of the default network peaks
# ~0.9 GiB higher than one of 64 on TensorFlow's CPU backend (benchmarks/bench_predict.py for speed).
PREDICT_BATCH = 64


def predict_pixels(model: keras.Model, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """(N, 96, 96) uint8 faces -> (N, 2K) keypoints in pixels (N may be 0), batch by batch with
    ``predict_on_batch``: ``model.predict`` builds a data pipeline per call, and a fold's TTA makes 72 calls
    (one fold's test and out-of-fold predictions: 73.5 s through ``model.predict``, 56.5 s this way; README,
    "On a slower machine")."""
    return np.concatenate([
        np.asarray(model.predict_on_batch(images[start : start + batch_size, ..., None].astype(np.float32)))
        for start in range(0, max(len(images), 1), batch_size)
    ])


def shifted_faces(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Faces (N, 96, 96) with their content moved ``dx`` pixels right and ``dy`` down, the edges replicated
    into the uncovered border (as augmentation's warps fill it)."""
    if dx == dy == 0:
        return images
    reach = max(abs(dx), abs(dy))
    padded = np.pad(images, ((0, 0), (reach, reach), (reach, reach)), mode="edge")
    size = images.shape[1]
    return np.ascontiguousarray(padded[:, reach - dy : reach - dy + size, reach - dx : reach - dx + size])


def shift_grid(shift: int) -> list[tuple[int, int]]:
    """The (dx, dy) views of shift TTA: the face itself first, then the rest of the 3x3 grid of whole-pixel
    shifts {-shift, 0, shift}^2 (none without a shift)."""
    steps = (-shift, 0, shift) if shift else (0,)
    return [(0, 0), *((dx, dy) for dy in steps for dx in steps if (dx, dy) != (0, 0))]


def tta_views(
    model: keras.Model, images: np.ndarray, specialist: Specialist, batch_size: int = PREDICT_BATCH,
    mirror_axis: float = MIRROR_AXIS, shift: int = 0,
) -> list[np.ndarray]:
    """The predictions (N, 2K) of every TTA view, each mapped back to the face's own pixels: the face and its
    mirror (points mirrored back, left/right swapped) at every shift of ``shift_grid`` (points moved back).
    The first is the plain prediction."""
    views = []
    for dx, dy in shift_grid(shift):
        moved = shifted_faces(images, dx, dy)
        on_face = predict_pixels(model, moved, batch_size)
        on_mirror = predict_pixels(model, np.ascontiguousarray(moved[:, :, ::-1]), batch_size)
        mapped_back = mirror_points(on_mirror.reshape(len(images), -1, 2), specialist.flip_permutation, mirror_axis)
        offset = np.tile(np.array([dx, dy], np.float32), len(specialist.keypoints))
        views += [on_face - offset, mapped_back.reshape(len(images), -1) - offset]
    return views


@dataclass(frozen=True)
class Reframe:
    """Test-time re-framing: each face's TTA prediction tells its framing; a face framed outside ``bounds``
    (``Reframing``'s arguments: the middle of the fold's training framings, ``FramingRange.bounds``) is moved
    the least way into them and predicted again (TTA too), and the points mapped back are mixed in with
    ``weight``. Tiny faces in a corner and close-ups, which decide much of the RMSE, are then predicted
    where the network has seen most faces."""

    bounds: dict
    weight: float


def reframed_faces(images: np.ndarray, transforms: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Faces (N, 96, 96) moved by ``Reframing`` transforms (N, 4), as float32 0..255."""
    layer = ReframedFaces()
    return np.concatenate([
        ops.convert_to_numpy(layer([ops.convert_to_tensor(images[i : i + batch_size, ..., None], "float32"),
                                    ops.convert_to_tensor(transforms[i : i + batch_size], "float32")]))[..., 0]
        for i in range(0, len(images), batch_size)])


def predict_with_tta(
    model: keras.Model, images: np.ndarray, specialist: Specialist, batch_size: int = PREDICT_BATCH,
    mirror_axis: float = MIRROR_AXIS, shift: int = 0, reframe: Reframe | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain predictions and TTA ones, the mean of ``tta_views``: a network trained on mirrored and shifted
    faces answers each view a little differently, so their mean cancels part of its error. With ``reframe``,
    the mean is mixed with that of the re-framed faces' views."""
    views = tta_views(model, images, specialist, batch_size, mirror_axis, shift)
    tta = np.mean(views, axis=0)
    if reframe is None or not reframe.weight:
        return views[0], tta
    transforms = ops.convert_to_numpy(Reframing(**reframe.bounds)(ops.convert_to_tensor(tta, "float32")))
    again = np.mean(tta_views(model, reframed_faces(images, transforms), specialist, batch_size, mirror_axis, shift), axis=0)
    back = ReframedPointsBack()([ops.convert_to_tensor(again, "float32"), ops.convert_to_tensor(transforms, "float32")])
    return views[0], ops.convert_to_numpy(MixPoints(reframe.weight)([ops.convert_to_tensor(tta, "float32"), back]))
