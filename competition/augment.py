"""Flip-aware augmentation with imgaug.

imgaug's Fliplr mirrors keypoint x but keeps their names, so a mirrored face's "left eye" would
sit where the right eye belongs: the classic bug of this competition. Here every flipped face
also has its left/right keypoints swapped, through the specialist's flip permutation.
"""

from __future__ import annotations

import numpy as np

from .config import AugmentConfig
from .imgaug_compat import iaa
from .schema import FIRST_PIXEL_CENTRE, MIRROR_AXIS

# imgaug puts pixel i's centre at i + 0.5; the labels put it at i + FIRST_PIXEL_CENTRE.
_IMGAUG_OFFSET = 0.5 - FIRST_PIXEL_CENTRE


def mirror_points(points: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Keypoints (N, K, 2) of the mirrored faces: x -> MIRROR_AXIS - x, left/right pairs swapped."""
    flipped = points[:, permutation].copy()
    flipped[..., 0] = MIRROR_AXIS - flipped[..., 0]
    return flipped



def _imgaug_keypoints(images: np.ndarray, points: np.ndarray, augmenter) -> tuple[np.ndarray, np.ndarray]:
    """Run an imgaug augmenter on faces and (N, K, 2) keypoints, missing (NaN) ones kept missing."""
    missing = np.isnan(points)
    shifted = np.where(missing, 0.0, points) + _IMGAUG_OFFSET
    images_aug, points_aug = augmenter(images=images, keypoints=list(shifted.astype(np.float32)))
    points_aug = np.stack(points_aug) - _IMGAUG_OFFSET
    return np.asarray(images_aug), np.where(missing, np.nan, points_aug)


def imgaug_flip(images: np.ndarray, points: np.ndarray, permutation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """imgaug's Fliplr plus the left/right swap that imgaug does not do."""
    images, points = _imgaug_keypoints(images, points, iaa.Fliplr(1.0))
    return images, points[:, permutation]


class Augmenter:
    """Random flips, small affine warps and brightness/contrast for training batches."""

    def __init__(self, config: AugmentConfig, permutation: np.ndarray):
        self.flip_probability = config.flip
        self.permutation = permutation
        self.pipeline = iaa.Sequential(
            [
                iaa.Affine(
                    rotate=(-config.rotate, config.rotate),
                    scale=(1 - config.scale, 1 + config.scale),
                    translate_percent={"x": (-config.shift, config.shift), "y": (-config.shift, config.shift)},
                    mode="edge",
                ),
                iaa.Multiply((1 - config.brightness, 1 + config.brightness)),
                iaa.LinearContrast((1 - config.contrast, 1 + config.contrast)),
            ]
        )

    def __call__(self, images: np.ndarray, points: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Augment faces (N, H, W) uint8 and keypoints (N, K, 2); the same seed gives the same batch."""
        rng = np.random.default_rng(seed)
        images, points = images.copy(), points.copy()
        flip = rng.random(len(images)) < self.flip_probability
        if flip.any():
            images[flip], points[flip] = imgaug_flip(images[flip], points[flip], self.permutation)
        pipeline = self.pipeline.deepcopy()  # a private copy: batches may be made in parallel threads
        pipeline.seed_(int(rng.integers(2**31)))
        return _imgaug_keypoints(images, points, pipeline)
