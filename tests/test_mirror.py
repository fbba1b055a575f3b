"""The mirror axis estimated from the data: exact on ideal predictions, and found on faces whose
labels follow a known axis."""

import numpy as np
import pytest

from competition.config import load_config
from competition.data import TrainingSet
from competition.folds import make_folds
from competition.mirror import axis_from_predictions, estimate_mirror_axis
from competition.schema import COORDINATES, SPECIALISTS


def test_ideal_predictions_give_the_axis_exactly():
    """A model that knows the labels' convention predicts x'_k = T - x_p(k) on the mirror."""
    rng = np.random.default_rng(0)
    permutation = SPECIALISTS["partial"].flip_permutation  # [1, 0, 2, 3]
    on_faces = rng.uniform(20, 76, (50, 4, 2))
    on_mirrored = on_faces[:, permutation].copy()
    on_mirrored[..., 0] = 97.6 - on_mirrored[..., 0]
    labelled = np.ones((50, 4), bool)
    assert axis_from_predictions(on_faces, on_mirrored, permutation, labelled) == pytest.approx(97.6)
    on_mirrored[:, 2, 0] = 48.0  # the nose unlearnt: predicted at the mean wherever it is
    labelled[:, 2] = False
    assert axis_from_predictions(on_faces, on_mirrored, permutation, labelled) == pytest.approx(97.6)


def _blob_faces(count: int, first_pixel_centre: float, rng) -> TrainingSet:
    """Faces of four bright blobs placed at the partial keypoints, labelled with pixel column i's centre at
    i + first_pixel_centre: their mirror axis is 95 + 2 * first_pixel_centre. The left eye sits further
    from the centre than the right one, so a model that ignored the pixels would miss the axis by ~2 px."""
    keypoints = np.full((count, 30), np.nan, np.float32)
    centre = (95 + 2 * first_pixel_centre) / 2
    spots = {
        "left_eye_center": (centre + 20, 38),
        "right_eye_center": (centre - 16, 38),
        "nose_tip": (centre, 58),
        "mouth_center_bottom_lip": (centre, 78),
    }
    rows, columns = np.mgrid[0:96, 0:96]
    images = np.zeros((count, 96, 96), np.float32)
    for name, (x, y) in spots.items():
        column = COORDINATES.index(f"{name}_x")
        position = np.stack([x + rng.uniform(-8, 8, count), y + rng.uniform(-6, 6, count)], axis=1)
        keypoints[:, column : column + 2] = position
        pixel = position - first_pixel_centre  # where the label's pixel centre is, 0-based
        images += 255 * np.exp(-((columns - pixel[:, 0, None, None]) ** 2 + (rows - pixel[:, 1, None, None]) ** 2) / 8)
    return TrainingSet(np.clip(images, 0, 255).astype(np.uint8), keypoints, f"blobs-{first_pixel_centre}")


@pytest.mark.slow
def test_the_estimate_finds_a_known_axis_within_a_quarter_pixel():
    faces = _blob_faces(800, first_pixel_centre=1.3, rng=np.random.default_rng(1))  # axis 97.6
    folds = make_folds(faces, 4, seed=0)
    config = load_config("cpu-wide", ["train.workers=1", "augment.rotate=0", "augment.scale=0", "augment.shift=0"])
    axis = estimate_mirror_axis(faces, folds, config, epochs=10)
    assert axis == pytest.approx(97.6, abs=0.25)
