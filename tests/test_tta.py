"""Flip test-time augmentation maps the mirror's keypoints back exactly."""

import keras
import numpy as np
import pytest
from keras import ops

from competition.models import build_model
from competition.models.regression import Config as RegressionConfig
from competition.schema import FIRST_PIXEL_CENTRE, FLIP_PAIRS, IMAGE_SIZE, MIRROR_AXIS, SPECIALISTS
from competition.tta import predict_pixels, predict_with_tta, shift_grid, tta_faces, view_points


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
    plain, with_tta = predict_with_tta(model, faces, specialist)
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
    plain, with_tta = predict_with_tta(model, faces, specialist)
    np.testing.assert_allclose(plain, np.tile(mean, (len(faces), 1)), atol=1e-4)
    # Mirror axis 97 (1-based pixel centres). Left eye x: (66 + (97 - 30)) / 2; y: (37 + 39) / 2;
    # the nose and lip mirror onto themselves: (48 + (97 - 48)) / 2, (49 + (97 - 49)) / 2
    expected = [66.5, 38.0, 30.5, 38.0, 48.5, 60.0, 48.5, 80.0]
    np.testing.assert_allclose(with_tta, np.tile(expected, (len(faces), 1)), atol=1e-4)


def test_predict_pixels_goes_batch_by_batch_in_order_and_takes_no_faces(faces):
    """Batch by batch (the last one short) it answers what Keras' own predict answers, row for row."""
    model = MirrorEquivariantCentroids(SPECIALISTS["partial"])
    expected = model.predict(faces[..., None].astype(np.float32), verbose=0)
    assert np.ptp(expected, axis=0).max() > 1e-3  # the faces get different answers: the order is checked
    np.testing.assert_allclose(predict_pixels(model, faces, batch_size=5), expected, atol=1e-4)
    assert predict_pixels(model, faces[:0]).shape == (0, 8)


class BrightestDot(keras.Model):
    """Every keypoint at the brightness-weighted centroid of the face (label pixels): on a black face with
    one bright dot, the dot itself, wherever it is moved or mirrored."""

    def call(self, faces):
        weights = ops.reshape(ops.cast(faces, "float32"), (-1, IMAGE_SIZE * IMAGE_SIZE))
        x, y = np.meshgrid(np.arange(IMAGE_SIZE) + FIRST_PIXEL_CENTRE, np.arange(IMAGE_SIZE) + FIRST_PIXEL_CENTRE)
        mass = ops.sum(weights, axis=1, keepdims=True)
        centre_x = ops.matmul(weights, ops.convert_to_tensor(x.reshape(-1, 1), "float32")) / mass
        centre_y = ops.matmul(weights, ops.convert_to_tensor(y.reshape(-1, 1), "float32")) / mass
        return ops.tile(ops.concatenate([centre_x, centre_y], axis=1), (1, 15))


def test_shifted_faces_move_their_content_and_replicate_the_edges():
    from competition.models.layers import ShiftFaces

    faces = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
    faces[0, 50, 40] = 200
    faces[0, :, 0] = 7  # the left column
    moved = ops.convert_to_numpy(ShiftFaces(3, -2)(faces))[..., 0]
    assert moved.shape == faces.shape[:3] and moved[0, 48, 43] == 200 and moved[0, 50, 40] == 0
    assert (moved[0, :, :4] == 7).all() and (moved[0, :, 4:] != 7).all()  # the left column spread over 4


@pytest.mark.parametrize("shift", [0, 3])
def test_every_tta_view_maps_a_dots_points_back_onto_the_dot(shift):
    """The mirror and shift views of a face with one dot each put the dot back where it is: a view moved
    back the wrong way, or not mirrored back, would miss it by pixels."""
    faces = np.zeros((4, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    spots = [(50, 40), (10, 80), (85, 12), (47, 48)]  # (row, column)
    for face, (row, column) in zip(faces, spots):
        face[row, column] = 255
    expected = np.array([[column + FIRST_PIXEL_CENTRE, row + FIRST_PIXEL_CENTRE] * 15 for row, column in spots])
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    graph = keras.Model(inputs, view_points(BrightestDot(), tta_faces(inputs, shift), SPECIALISTS["full"], MIRROR_AXIS))
    views = predict_pixels(graph, faces)
    assert len(views) == 2 * len(shift_grid(shift)) == (18 if shift else 2)
    for view in views:
        np.testing.assert_allclose(view, expected, atol=1e-3)
    plain, with_tta = predict_with_tta(BrightestDot(), faces, SPECIALISTS["full"], shift=shift)
    np.testing.assert_allclose(plain, views[0])
    np.testing.assert_allclose(with_tta, expected, atol=1e-3)


BOUNDS = {
    "eyes": [0, 1],
    "eye_distance": [30.0, 36.0],
    "angle": [-0.05, 0.05],
    "midpoint_x": [45.0, 52.0],
    "midpoint_y": [36.0, 40.0],
}


def moved_points(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, K, 2) taken by (c, s, bx, by) similarities, written out here as the layers' contract."""
    c, s, bx, by = (transforms[:, i, None] for i in range(4))
    x, y = points[..., 0], points[..., 1]
    return np.stack([c * x - s * y + bx, s * x + c * y + by], axis=-1)


def test_reframing_moves_a_face_the_least_way_into_the_bounds():
    """A face framed within the bounds stays put; a tiny, tilted face in a corner lands on the bounds' nearest
    edges: eye distance 30, eye line at 0.05 rad, midpoint (45, 36)."""
    from competition.models.layers import Reframing

    within = [66.0, 38.0, 32.0, 38.0]  # distance 34, level, midpoint (49, 38)
    tilt = 0.2
    corner = [20 + 5 * np.cos(tilt), 20 + 5 * np.sin(tilt), 20 - 5 * np.cos(tilt), 20 - 5 * np.sin(tilt)]
    points = np.array([within + [48.0, 60.0], corner + [20.0, 30.0]], np.float32)  # eyes, then a nose
    transforms = ops.convert_to_numpy(Reframing(**BOUNDS)(points))
    np.testing.assert_allclose(transforms[0], [1, 0, 0, 0], atol=1e-5)
    eyes = moved_points(transforms, points.reshape(2, -1, 2))[1, :2]
    line = eyes[0] - eyes[1]
    assert np.linalg.norm(line) == pytest.approx(30.0, abs=1e-3)
    assert np.arctan2(line[1], line[0]) == pytest.approx(0.05, abs=1e-5)
    np.testing.assert_allclose(eyes.mean(axis=0), [45.0, 36.0], atol=1e-3)


def blurred_dots(spots, size: float = 1.5) -> np.ndarray:
    """One face (96, 96) float32 with a Gaussian dot at each (x, y) in label pixels: its centroid is the spot,
    whatever the interpolation."""
    x, y = np.meshgrid(np.arange(IMAGE_SIZE) + FIRST_PIXEL_CENTRE, np.arange(IMAGE_SIZE) + FIRST_PIXEL_CENTRE)
    return sum(255 * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * size**2)) for sx, sy in spots).astype(np.float32)


def test_reframed_faces_carry_a_dot_where_the_transform_takes_it_and_back():
    """A dot at (30, 40) under a 1.6x zoom turned by 0.3 rad: the warped face's dot sits at the moved point,
    the points layer maps it back onto the dot, and the uncovered border replicates the edges."""
    from competition.models.layers import ReframedFaces, ReframedPointsBack

    scale, turn = 1.6, 0.3
    transforms = np.array([[scale * np.cos(turn), scale * np.sin(turn), -5.0, -20.0]], np.float32)
    spot = np.array([[[30.0, 40.0]]], np.float32)
    target = moved_points(transforms, spot)[0, 0]
    assert np.linalg.norm(target - spot[0, 0]) > 10  # the dot does move
    face = blurred_dots([spot[0, 0]])[None, ..., None]
    warped = ops.convert_to_numpy(ReframedFaces()([face, transforms]))
    np.testing.assert_allclose(BrightestDot()(warped)[0, :2], target, atol=0.05)
    back = ops.convert_to_numpy(ReframedPointsBack()([np.tile(target, 15)[None].astype(np.float32), transforms]))
    np.testing.assert_allclose(back, np.tile(spot[0, 0], (1, 15)), atol=1e-4)
    edge = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
    edge[:, :, 0] = 7  # the left column, moved 5 px right without zoom: columns 0..5 take it
    moved = ops.convert_to_numpy(ReframedFaces()([edge, np.array([[1, 0, 5, 0]], np.float32)]))
    assert (moved[0, :, :6] == 7).all() and (moved[0, :, 6:] == 0).all()


class EyeDots(keras.Model):
    """The subject's left eye at the brightness centroid of what lies right of the face's own centroid, the
    right eye at that of what lies left of it, the other keypoints midway: on a face with two dots side by
    side, the dots, however the face is moved, zoomed or mirrored."""

    def call(self, faces):
        weights = ops.reshape(ops.cast(faces, "float32"), (-1, IMAGE_SIZE, IMAGE_SIZE))
        x, y = np.meshgrid(np.arange(IMAGE_SIZE) + FIRST_PIXEL_CENTRE, np.arange(IMAGE_SIZE) + FIRST_PIXEL_CENTRE)
        centre_x = ops.sum(weights * x, axis=(1, 2)) / ops.sum(weights, axis=(1, 2))
        half = ops.cast(x[None] > centre_x[:, None, None], "float32")
        centres = []
        for mask in (half, 1 - half):
            mass = ops.sum(weights * mask, axis=(1, 2))
            centres.append(
                ops.stack(
                    [ops.sum(weights * mask * x, axis=(1, 2)) / mass, ops.sum(weights * mask * y, axis=(1, 2)) / mass],
                    axis=-1,
                )
            )
        middle = (centres[0] + centres[1]) / 2
        return ops.concatenate([centres[0], centres[1], *[middle] * 13], axis=-1)


def test_reframe_tta_maps_the_reframed_faces_points_back_onto_the_dots():
    """Two dots as eyes: a small face in a corner and one framed within the bounds. Re-framed (weight 1) and
    predicted again with flips and shifts, both faces' eyes come back onto their dots."""
    from competition.models.layers import ReframedFaces, Reframing
    from competition.tta import Reframe

    eyes = [[(28.0, 22.0), (20.0, 21.0)], [(66.0, 38.0), (32.0, 38.0)]]  # (left, right) eye per face
    faces = np.stack([blurred_dots(spots) for spots in eyes])
    expected = np.array([[*left, *right] for left, right in eyes])
    plain, with_tta = predict_with_tta(EyeDots(), faces, SPECIALISTS["full"], shift=2, reframe=Reframe(BOUNDS, 1.0))
    np.testing.assert_allclose(plain[:, :4], expected, atol=0.05)
    np.testing.assert_allclose(with_tta[:, :4], expected, atol=0.1)
    transforms = ops.convert_to_numpy(Reframing(**BOUNDS)(plain))
    reframed = EyeDots()(ReframedFaces()([faces[..., None], transforms]))
    assert np.abs(ops.convert_to_numpy(reframed)[0, :4] - expected[0]).max() > 10  # the corner face did move
