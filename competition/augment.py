"""Flip-aware augmentation with imgaug.

imgaug's Fliplr mirrors keypoint x but keeps their names, so a mirrored face's "left eye" would
sit where the right eye belongs: the classic bug of this competition. Here every flipped face
also has its left/right keypoints swapped, through the specialist's flip permutation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import AugmentConfig
from .imgaug_compat import iaa
from .schema import COORDINATES, FIRST_PIXEL_CENTRE, IMAGE_SIZE, KEYPOINTS, MIRROR_AXIS, STYLES, Specialist, style_of

EYES = ("left_eye_center", "right_eye_center")  # what a framing is measured by

# imgaug puts pixel i's centre at i + 0.5; the labels put it at i + FIRST_PIXEL_CENTRE.
_IMGAUG_OFFSET = 0.5 - FIRST_PIXEL_CENTRE


def mirror_points(points: np.ndarray, permutation: np.ndarray, axis: float = MIRROR_AXIS) -> np.ndarray:
    """Keypoints (N, K, 2) of the mirrored faces: x -> axis - x, left/right pairs swapped."""
    flipped = points[:, permutation].copy()
    flipped[..., 0] = axis - flipped[..., 0]
    return flipped


def _imgaug_keypoints(
    images: np.ndarray, points: np.ndarray, augmenter, offset: float = _IMGAUG_OFFSET
) -> tuple[np.ndarray, np.ndarray]:
    """Run an imgaug augmenter on faces and (N, K, 2) keypoints, missing (NaN) ones kept missing."""
    missing = np.isnan(points)
    shifted = np.where(missing, 0.0, points) + offset
    images_aug, points_aug = augmenter(images=images, keypoints=list(shifted.astype(np.float32)))
    points_aug = np.stack(points_aug) - offset
    return np.asarray(images_aug), np.where(missing, np.nan, points_aug)


def imgaug_flip(
    images: np.ndarray, points: np.ndarray, permutation: np.ndarray, axis: float = MIRROR_AXIS
) -> tuple[np.ndarray, np.ndarray]:
    """imgaug's Fliplr plus the left/right swap that imgaug does not do. Fliplr mirrors its own x about
    IMAGE_SIZE; shifting the labels by half the difference makes it mirror them about ``axis``."""
    images, points = _imgaug_keypoints(images, points, iaa.Fliplr(1.0), offset=(IMAGE_SIZE - axis) / 2)
    return images, points[:, permutation]


@dataclass(frozen=True)
class FramingRange:
    """How faces are framed across the training labels: the range of the inter-ocular distance, of
    the eye centres' midpoint (labels' pixels) and of the eye line's angle (radians, 0 level). Rare framings
    (a small face in a corner, a face zoomed far in) lie at its edges; re-framing draws uniformly within it
    so they are seen often, or, with ``rare`` framings, copies one of those: the training faces' own most
    unusual framings. Test-time re-framing (``predict``) moves faces into the range's middle."""

    eye_distance: tuple[float, float]
    midpoint_x: tuple[float, float]
    midpoint_y: tuple[float, float]
    angle: tuple[float, float]
    eyes: tuple[int, int]  # where the left and right eye centres are among a specialist's keypoints
    rare: tuple[tuple[float, float, float], ...] = ()  # (eye distance, midpoint x, midpoint y) of each

    @classmethod
    def of(
        cls, keypoints: np.ndarray, specialist: Specialist, rarest: float = 0.0, middle: float = 0.0
    ) -> FramingRange | None:
        """From (N, 30) labels; None when the specialist lacks the eye centres or no face has both. With
        ``rarest`` > 0, that fraction of the faces (at least one) whose framing lies farthest from the
        others' (Mahalanobis distance over log eye distance and midpoint) are kept as ``rare``. Each range
        runs from the ``middle`` quantile to the 1 - ``middle`` one (0: the whole range)."""
        if not {EYES[0], EYES[1]} <= set(specialist.keypoints):
            return None
        left, right = (keypoints[:, 2 * KEYPOINTS.index(eye) : 2 * KEYPOINTS.index(eye) + 2] for eye in EYES)
        both = ~np.isnan(left).any(axis=1) & ~np.isnan(right).any(axis=1)
        if not both.any():
            return None
        line = left[both] - right[both]
        distance = np.linalg.norm(line, axis=1)
        midpoint = (left[both] + right[both]) / 2
        rare = ()
        if rarest > 0:
            framings = np.column_stack([np.log(np.maximum(distance, 1e-3)), midpoint])
            centred = framings - framings.mean(axis=0)
            spread = np.linalg.pinv(np.atleast_2d(np.cov(centred.T)))
            unusual = np.argsort(-np.einsum("ij,jk,ik->i", centred, spread, centred), kind="stable")
            kept = unusual[: max(1, round(rarest * len(framings)))]
            rare = tuple((float(distance[i]), float(midpoint[i, 0]), float(midpoint[i, 1])) for i in kept)
        angle = np.arctan2(line[:, 1], line[:, 0])

        def spread(values: np.ndarray) -> tuple[float, float]:
            return float(np.quantile(values, middle)), float(np.quantile(values, 1 - middle))

        return cls(
            spread(distance),
            spread(midpoint[:, 0]),
            spread(midpoint[:, 1]),
            spread(angle),
            tuple(specialist.keypoints.index(eye) for eye in EYES),
            rare,
        )

    def bounds(self) -> dict:
        """The ranges and the eyes' places, as ``models.layers.Reframing``'s arguments (plain, for fold.json)."""
        return {
            "eyes": list(self.eyes),
            "eye_distance": list(self.eye_distance),
            "angle": list(self.angle),
            "midpoint_x": list(self.midpoint_x),
            "midpoint_y": list(self.midpoint_y),
        }

    def reframe(self, points: np.ndarray, rng: np.random.Generator, anywhere: float = 0.0):
        """An imgaug affine taking one face's eyes ((K, 2) label pixels) to a framing drawn uniformly within
        the range, or copied from a rare one; with probability ``anywhere``, its midpoint is drawn instead
        uniformly over the image, one eye distance from each edge (where that leaves room). None if the face
        lacks an eye centre."""
        left, right = points[self.eyes[0]], points[self.eyes[1]]
        if np.isnan(left).any() or np.isnan(right).any() or np.allclose(left, right):
            return None
        if self.rare:
            distance, *target = self.rare[rng.integers(len(self.rare))]
            target = np.array(target)
        else:
            distance = rng.uniform(*self.eye_distance)
            target = np.array([rng.uniform(*self.midpoint_x), rng.uniform(*self.midpoint_y)])
        if anywhere and rng.random() < anywhere and distance < IMAGE_SIZE / 2:
            target = rng.uniform(distance, IMAGE_SIZE - distance, size=2)
        scale = distance / np.linalg.norm(left - right)
        centre = IMAGE_SIZE / 2 - _IMGAUG_OFFSET  # imgaug scales about the image centre, in label pixels
        moved = centre + scale * ((left + right) / 2 - centre)
        shift = target - moved
        return iaa.Affine(
            scale=float(scale),
            translate_percent={"x": float(shift[0] / IMAGE_SIZE), "y": float(shift[1] / IMAGE_SIZE)},
            mode="edge",
        )


class Augmenter:
    """Random flips, re-framings, small affine warps and brightness/contrast for training batches."""

    def __init__(
        self,
        config: AugmentConfig,
        permutation: np.ndarray,
        framing: FramingRange | None = None,
        mirror_axis: float = MIRROR_AXIS,
        columns: np.ndarray | None = None,
    ):
        """``columns``: the points' coordinates among the 30 (default: all 15 keypoints), which tell a face's
        annotation style for ``config.framing_styles``."""
        self.flip_probability = config.flip
        self.framed_styles = None if set(config.framing_styles) >= set(STYLES) else list(config.framing_styles)
        self.columns = np.arange(len(COORDINATES)) if columns is None else columns
        self.permutation, self.mirror_axis = permutation, mirror_axis
        self.framing_probability, self.framing = (config.framing, framing) if framing else (0.0, None)
        self.framing_anywhere = config.framing_anywhere
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

    def __call__(self, images: np.ndarray, points: np.ndarray, seed: int, labelled: np.ndarray | None = None):
        """Augment faces (N, H, W) uint8 and keypoints (N, K, 2); the same seed gives the same batch. A point is
        labelled where it is not NaN, or where ``labelled`` (N, K) says so when some points were filled in (by a
        teacher); then ``labelled`` is returned too, swapped with its points on mirrored faces."""
        rng = np.random.default_rng(seed)
        images, points = images.copy(), points.copy()
        given = labelled is not None
        labelled = ~np.isnan(points[..., 0]) if labelled is None else labelled.copy()
        flip = rng.random(len(images)) < self.flip_probability
        if flip.any():
            images[flip], points[flip] = imgaug_flip(images[flip], points[flip], self.permutation, self.mirror_axis)
            labelled[flip] = labelled[flip][:, self.permutation]
        reframe = rng.random(len(images)) < self.framing_probability if self.framing_probability else []
        if len(reframe) and self.framed_styles is not None:
            coordinates = np.zeros((len(points), len(COORDINATES)), bool)
            coordinates[:, self.columns] = np.repeat(labelled, 2, axis=1)
            reframe &= np.isin(style_of(coordinates), self.framed_styles)
        for face in np.flatnonzero(reframe):
            affine = self.framing.reframe(points[face], rng, self.framing_anywhere)
            if affine is not None:
                affine.seed_(0)
                moved, moved_points = _imgaug_keypoints(images[face : face + 1], points[face : face + 1], affine)
                images[face], points[face] = moved[0], moved_points[0]
        pipeline = self.pipeline.deepcopy()  # a private copy: batches may be made in parallel threads
        pipeline.seed_(int(rng.integers(2**31)))
        images, points = _imgaug_keypoints(images, points, pipeline)
        return (images, points, labelled) if given else (images, points)
