"""Flip test-time augmentation maps the mirror's keypoints back exactly."""

import keras
import numpy as np
import pytest
from keras import ops

from competition.models import build_model
from competition.models.regression import Config as RegressionConfig
from competition.predict import predict_pixels, predict_with_flip
from competition.schema import FIRST_PIXEL_CENTRE, FLIP_PAIRS, IMAGE_SIZE, MIRROR_AXIS, SPECIALISTS


class MirrorEquivariantCentroids(keras.Model):
    """Each keypoint is the brightness-weighted centroid of the face under a fixed mask.

    A left keypoint's mask is its right partner's mirrored, and an unpaired keypoint's mask is
    symmetric, so the mirrored face's keypoints are exactly the face's mirrored and swapped: an
    ideal model, for which flip TTA must change nothing.
    """

    def __init__(self, specialist, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        columns = np.arange(IMAGE_SIZE)
        masks = {}
        for left, right in FLIP_PAIRS:
            # the subject's left is the image's right half
            masks[left] = rng.random((IMAGE_SIZE, IMAGE_SIZE)) * (columns >= IMAGE_SIZE // 2)
            masks[right] = masks[left][:, ::-1]
        for keypoint in specialist.keypoints:
            if keypoint not in masks:
                mask = rng.random((IMAGE_SIZE, IMAGE_SIZE))
                masks[keypoint] = mask + mask[:, ::-1]
        stacked = np.stack([masks[k] for k in specialist.keypoints]).reshape(len(specialist.keypoints), -1)
        x, y = np.meshgrid(columns + FIRST_PIXEL_CENTRE, columns + FIRST_PIXEL_CENTRE)  # label coordinates
        self.mass = stacked.T
        self.moment_x = (stacked * x.ravel()).T
        self.moment_y = (stacked * y.ravel()).T

    def call(self, faces):
        brightness = ops.reshape(ops.cast(faces, "float64"), (-1, IMAGE_SIZE * IMAGE_SIZE)) + 1.0
        mass = ops.matmul(brightness, ops.convert_to_tensor(self.mass, "float64"))
        x = ops.matmul(brightness, ops.convert_to_tensor(self.moment_x, "float64")) / mass
        y = ops.matmul(brightness, ops.convert_to_tensor(self.moment_y, "float64")) / mass
        return ops.cast(ops.reshape(ops.stack([x, y], axis=-1), (-1, 2 * self.mass.shape[1])), "float32")


@pytest.fixture
def faces(training):
    return training.images[:12]


@pytest.mark.parametrize("name", ["full", "partial"])
def test_an_equivariant_model_gives_the_same_points_with_and_without_tta(name, faces):
    specialist = SPECIALISTS[name]
    model = MirrorEquivariantCentroids(specialist)
    plain, with_tta = predict_with_flip(model, faces, specialist)
    np.testing.assert_allclose(with_tta, plain, atol=1e-3)
    # Mapping the mirror's points back without the left/right swap (imgaug's Fliplr alone), or
    # without mirroring x, lands far from the face's points: the agreement above is not free.
    points = plain.reshape(len(faces), -1, 2)
    on_mirror = predict_pixels(model, np.ascontiguousarray(faces[:, :, ::-1])).reshape(points.shape)
    x_mirrored_only = np.stack([MIRROR_AXIS - on_mirror[..., 0], on_mirror[..., 1]], axis=-1)
    swapped_only = on_mirror[:, specialist.flip_permutation]
    assert np.abs(x_mirrored_only - points).max() > 20
    assert np.abs(swapped_only - points).max() > 20
    left_eye_x = plain[:, 0]
    assert (left_eye_x > IMAGE_SIZE / 2).all()  # a face-like layout: the subject's left on the image right


def test_tta_of_a_constant_model_averages_each_point_with_its_mirror_partner(faces):
    """An untrained model predicts its target mean; TTA averages it with its mirror, worked by hand."""
    specialist = SPECIALISTS["partial"]  # left eye, right eye, nose tip, bottom lip
    mean = np.array([66.0, 37.0, 30.0, 39.0, 48.0, 60.0, 49.0, 80.0])
    small = RegressionConfig(filters=[4], convs_per_block=1, dense_units=4, dropout=0.0)
    model = build_model(small, mean, np.ones(8), 1e-3)
    plain, with_tta = predict_with_flip(model, faces, specialist)
    np.testing.assert_allclose(plain, np.tile(mean, (len(faces), 1)), atol=1e-4)
    # Mirror axis 97 (1-based pixel centres). Left eye x: (66 + (97 - 30)) / 2; y: (37 + 39) / 2;
    # the nose and lip mirror onto themselves: (48 + (97 - 48)) / 2, (49 + (97 - 49)) / 2
    expected = [66.5, 38.0, 30.5, 38.0, 48.5, 60.0, 48.5, 80.0]
    np.testing.assert_allclose(with_tta, np.tile(expected, (len(faces), 1)), atol=1e-4)
