"""Predicting keypoints in pixels, with optional flip test-time augmentation."""

from __future__ import annotations

import keras
import numpy as np

from .augment import mirror_points
from .schema import MIRROR_AXIS, Specialist

# Faces per forward pass (prediction and validation): a batch of 256 of the default network peaks
# ~0.9 GiB higher than one of 64 on TensorFlow's CPU backend (benchmarks/bench_predict.py for speed).
PREDICT_BATCH = 64


def predict_pixels(model: keras.Model, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """(N, 96, 96) uint8 faces -> (N, 2K) keypoints in pixels."""
    x = images[..., None].astype(np.float32)
    return model.predict(x, batch_size=batch_size, verbose=0)


def predict_with_flip(
    model: keras.Model, images: np.ndarray, specialist: Specialist, batch_size: int = PREDICT_BATCH,
    mirror_axis: float = MIRROR_AXIS,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain predictions and flip-TTA ones: the mean of the face's and its mirror's mapped back."""
    plain = predict_pixels(model, images, batch_size)
    on_mirror = predict_pixels(model, np.ascontiguousarray(images[:, :, ::-1]), batch_size)
    mapped_back = mirror_points(on_mirror.reshape(len(images), -1, 2), specialist.flip_permutation, mirror_axis)
    return plain, (plain + mapped_back.reshape(len(images), -1)) / 2
