import numpy as np
import pytest

from competition.augment import Augmenter, FramingRange, imgaug_flip, mirror_points
from competition.config import AugmentConfig
from competition.schema import COORDINATES, SPECIALISTS, Specialist


@pytest.fixture(params=["full", "partial"])
def faces(request, training):
    specialist = SPECIALISTS[request.param]
    rows = np.flatnonzero(training.style == "full")[:6] if request.param == "full" else np.arange(6)
    points = training.keypoints[np.ix_(rows, specialist.columns)].reshape(len(rows), -1, 2)
    return training.images[rows], points, specialist


def test_imgaug_flip_twice_returns_the_original(faces):
    images, points, specialist = faces
    once_images, once_points = imgaug_flip(images, points, specialist.flip_permutation)
    twice_images, twice_points = imgaug_flip(once_images, once_points, specialist.flip_permutation)
    assert not np.array_equal(once_images, images)
    assert np.array_equal(twice_images, images)
    np.testing.assert_allclose(twice_points, points, atol=1e-4)


def test_after_one_flip_the_left_eye_is_again_on_the_image_right(faces):
    images, points, specialist = faces
    assert (points[:, 0, 0] > 48).all()  # left_eye_center_x: the subject's left, the image's right
    _, flipped = imgaug_flip(images, points, specialist.flip_permutation)
    assert (flipped[:, 0, 0] > 48).all()
    # and it is the mirrored right eye
    np.testing.assert_allclose(flipped[:, 0, 0], 97 - points[:, 1, 0], atol=1e-4)


def test_imgaug_flip_matches_the_exact_mirror_and_keeps_missing_missing(faces):
    images, points, specialist = faces
    points = points.copy()
    points[0, -1] = np.nan
    ia_images, ia_points = imgaug_flip(images, points, specialist.flip_permutation)
    np_images, np_points = images[:, :, ::-1], mirror_points(points, specialist.flip_permutation)
    assert np.array_equal(ia_images, np_images)
    np.testing.assert_allclose(ia_points, np_points, atol=1e-4)
    assert np.isnan(ia_points[0, specialist.flip_permutation[-1]]).all()


def test_mirrored_pixels_follow_their_keypoint(training):
    """A keypoint's pixel lands where the flipped label says (labels: pixel (row, col) at (col + 1, row + 1))."""
    image = np.zeros((1, 96, 96), np.uint8)
    image[0, 40, 70] = 255
    points = np.full((1, 15, 2), np.nan)
    points[0, 0] = (71, 41)  # left_eye_center on the bright pixel
    flipped_image, flipped_points = imgaug_flip(image, points, SPECIALISTS["full"].flip_permutation)
    x, y = flipped_points[0, 1]  # now labelled right_eye_center
    assert (x, y) == pytest.approx((26, 41), abs=1e-4)
    assert flipped_image[0, 40, 25] == 255


def test_augmenter_is_deterministic_per_seed_and_changes_faces(faces):
    images, points, specialist = faces
    augmenter = Augmenter(AugmentConfig(), specialist.flip_permutation)
    a = augmenter(images, points, seed=7)
    b = augmenter(images, points, seed=7)
    c = augmenter(images, points, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
    assert not np.array_equal(a[0], c[0])
    assert np.isnan(a[1]).sum() == np.isnan(points).sum()


def test_augmenter_with_zero_strength_changes_nothing(faces):
    images, points, specialist = faces
    still = AugmentConfig(flip=0, rotate=0, scale=0, shift=0, brightness=0, contrast=0)
    out_images, out_points = Augmenter(still, specialist.flip_permutation)(images, points, seed=1)
    assert np.array_equal(out_images, images)
    np.testing.assert_allclose(out_points, points, atol=1e-4)


def test_augmenter_always_flipping_swaps_labels(training):
    specialist = SPECIALISTS["full"]
    rows = np.flatnonzero(training.style == "full")[:4]
    points = training.keypoints[rows].reshape(4, 15, 2)
    flip_only = AugmentConfig(flip=1.0, rotate=0, scale=0, shift=0, brightness=0, contrast=0)
    _, out = Augmenter(flip_only, specialist.flip_permutation)(training.images[rows], points, seed=3)
    left_eye = COORDINATES.index("left_eye_center_x") // 2
    assert (out[:, left_eye, 0] > 48).all()
    np.testing.assert_allclose(out[:, left_eye, 0], 97 - points[:, 1, 0], atol=1e-4)


def test_a_mirrored_face_carries_which_of_its_points_are_labels_across_with_them(training):
    """Filled-in points (a teacher's) are told from labels by a mask that swaps sides with its points."""
    specialist = SPECIALISTS["full"]
    rows = np.flatnonzero(training.style == "full")[:4]
    points = training.keypoints[rows].reshape(4, 15, 2)
    labelled = np.zeros((4, 15), bool)
    labelled[:, COORDINATES.index("left_eye_center_x") // 2] = True
    flip_only = AugmentConfig(flip=1.0, rotate=0, scale=0, shift=0, brightness=0, contrast=0)
    _, out, out_labelled = Augmenter(flip_only, specialist.flip_permutation)(training.images[rows], points, 3, labelled)
    assert out_labelled.sum() == 4 and out_labelled[:, COORDINATES.index("right_eye_center_x") // 2].all()
    np.testing.assert_allclose(out[:, 1, 0], 97 - points[:, 0, 0], atol=1e-4)  # the labelled point went along
    assert labelled[:, 0].all()  # the caller's mask untouched


def test_a_partial_style_face_with_filled_points_is_still_re_framed_as_partial_style():
    partial = np.tile(np.arange(30.0, 60.0), (1, 1))
    partial[0, :4] = (64, 40, 32, 40)
    labelled = np.zeros((1, 15), bool)
    labelled[0, SPECIALISTS["partial"].columns[::2] // 2] = True  # the rest filled in by a teacher
    framing = FramingRange((6.0, 6.0), (83.0, 83.0), (80.0, 80.0), (0.0, 0.0), (0, 1), rare=((6.0, 83.0, 80.0),))
    config = AugmentConfig(
        flip=0, rotate=0, scale=0, shift=0, brightness=0, contrast=0, framing=1.0, framing_styles=["partial"]
    )
    _, moved, _ = Augmenter(config, SPECIALISTS["full"].flip_permutation, framing)(
        np.zeros((1, 96, 96), np.uint8), partial.reshape(1, 15, 2), 1, labelled
    )
    np.testing.assert_allclose(np.linalg.norm(moved[0, 0] - moved[0, 1]), 6.0, atol=0.05)


def test_the_framing_range_is_the_spread_of_the_training_labels_eyes():
    keypoints = np.full((3, 30), np.nan)
    keypoints[0, :4] = (60, 40, 30, 40)  # distance 30, midpoint (45, 40)
    keypoints[1, :4] = (70, 30, 50, 30)  # distance 20, midpoint (60, 30)
    keypoints[2, :2] = (10, 10)  # one eye only: not a framing
    framing = FramingRange.of(keypoints, SPECIALISTS["partial"])
    assert framing == FramingRange((20.0, 30.0), (45.0, 60.0), (30.0, 40.0), (0.0, 0.0), (0, 1))
    nose_only = Specialist("nose", ("nose_tip",))
    assert FramingRange.of(keypoints, nose_only) is None


def test_the_middle_of_the_framing_range_runs_between_quantiles_and_measures_the_eye_lines_angle():
    """Five faces, eye distances 10..50 and eye lines tilted by 0..0.4 rad: the middle half (quantiles 0.25
    and 0.75) keeps the second to the fourth."""
    keypoints = np.full((5, 30), np.nan)
    for face, (distance, tilt) in enumerate(zip([10, 20, 30, 40, 50], [0.0, 0.1, 0.2, 0.3, 0.4])):
        half = distance / 2 * np.array([np.cos(tilt), np.sin(tilt)])
        keypoints[face, :4] = [*(np.array([48, 40]) + half), *(np.array([48, 40]) - half)]
    framing = FramingRange.of(keypoints, SPECIALISTS["partial"], middle=0.25)
    np.testing.assert_allclose(framing.eye_distance, (20, 40))
    np.testing.assert_allclose(framing.angle, (0.1, 0.3))
    np.testing.assert_allclose([framing.midpoint_x, framing.midpoint_y], [(48, 48), (40, 40)])
    assert framing.bounds() == {
        "eyes": [0, 1],
        "eye_distance": list(framing.eye_distance),
        "angle": list(framing.angle),
        "midpoint_x": [48.0, 48.0],
        "midpoint_y": [40.0, 40.0],
    }


def test_a_reframed_face_lands_within_the_range_and_its_pixels_follow_its_keypoints():
    """A bright dot under each eye: after re-framing, each labelled eye still sits on its dot."""
    framing = FramingRange((10.0, 14.0), (20.0, 30.0), (60.0, 70.0), (0.0, 0.0), (0, 1))
    image = np.zeros((1, 96, 96), np.uint8)
    points = np.full((1, 4, 2), np.nan)
    for index, (x, y) in enumerate(((66, 40), (30, 40))):  # label pixels: pixel (row, col) at (col + 1, row + 1)
        image[0, y - 2 : y + 1, x - 2 : x + 1] = 255
        points[0, index] = (x, y)
    config = AugmentConfig(flip=0, rotate=0, scale=0, shift=0, brightness=0, contrast=0, framing=1.0)
    augmenter = Augmenter(config, SPECIALISTS["partial"].flip_permutation, framing)
    for seed in range(5):
        moved, moved_points = augmenter(image, points, seed)
        left, right = moved_points[0, 0], moved_points[0, 1]
        assert 10 - 0.5 <= np.linalg.norm(left - right) <= 14 + 0.5
        midpoint = (left + right) / 2
        assert 20 - 0.5 <= midpoint[0] <= 30 + 0.5 and 60 - 0.5 <= midpoint[1] <= 70 + 0.5
        assert np.isnan(moved_points[0, 2:]).all()  # missing stays missing
        for x, y in (left, right):
            assert moved[0, int(round(y)) - 1, int(round(x)) - 1] > 100  # the dot under the moved label


def test_rare_framings_are_the_faces_farthest_from_the_others_and_a_reframed_face_copies_one():
    """Nine faces near one framing and one small face in a corner: with the rarest 10%, re-framing moves
    every face's eyes to the corner face's framing."""
    rng = np.random.default_rng(0)
    keypoints = np.full((10, 30), np.nan)
    for row in range(9):
        x, y, half = 48 + rng.normal(0, 2), 40 + rng.normal(0, 2), 16 + rng.normal(0, 1)
        keypoints[row, :4] = (x + half, y, x - half, y)
    keypoints[9, :4] = (86, 80, 80, 80)  # distance 6, midpoint (83, 80)
    framing = FramingRange.of(keypoints, SPECIALISTS["partial"], rarest=0.1)
    assert framing.rare == ((6.0, 83.0, 80.0),)
    assert FramingRange.of(keypoints, SPECIALISTS["partial"]).rare == ()

    config = AugmentConfig(flip=0, rotate=0, scale=0, shift=0, brightness=0, contrast=0, framing=1.0)
    augmenter = Augmenter(config, SPECIALISTS["partial"].flip_permutation, framing)
    points = keypoints[:9, :8].reshape(9, 4, 2)
    _, moved = augmenter(np.zeros((9, 96, 96), np.uint8), points, seed=1)
    np.testing.assert_allclose(np.linalg.norm(moved[:, 0] - moved[:, 1], axis=1), 6.0, atol=0.05)
    np.testing.assert_allclose((moved[:, 0] + moved[:, 1]) / 2, np.tile((83.0, 80.0), (9, 1)), atol=0.05)


def test_framing_anywhere_keeps_the_rare_eye_distance_and_spreads_the_midpoint_over_the_image():
    """One rare framing (a 10 px face at (40, 40)): with ``framing_anywhere`` 1, 200 re-framed faces keep its eye
    distance and put their eye midpoints all over the image, never within 10 px of an edge; with 0.5, some
    stay at (40, 40) and some do not."""
    framing = FramingRange((10.0, 10.0), (40.0, 40.0), (40.0, 40.0), (0.0, 0.0), (0, 1), rare=((10.0, 40.0, 40.0),))
    points = np.tile(np.array([[[64.0, 40.0], [32.0, 40.0], [48.0, 60.0], [48.0, 75.0]]]), (200, 1, 1))
    for anywhere in (1.0, 0.5):
        config = AugmentConfig(
            flip=0, rotate=0, scale=0, shift=0, brightness=0, contrast=0, framing=1.0, framing_anywhere=anywhere
        )
        _, moved = Augmenter(config, SPECIALISTS["partial"].flip_permutation, framing)(
            np.zeros((200, 96, 96), np.uint8), points, seed=3
        )
        np.testing.assert_allclose(np.linalg.norm(moved[:, 0] - moved[:, 1], axis=1), 10.0, atol=0.05)
        midpoint = (moved[:, 0] + moved[:, 1]) / 2
        at_rare = np.all(np.abs(midpoint - 40.0) < 0.05, axis=1)
        if anywhere == 1.0:
            assert not at_rare.any()
            assert midpoint.min() >= 10.0 - 0.05 and midpoint.max() <= 86.0 + 0.05
            assert midpoint.min(axis=0).max() < 20 and midpoint.max(axis=0).min() > 76  # corners reached
        else:
            assert 60 < at_rare.sum() < 140


def test_framing_styles_re_frame_only_the_faces_of_the_styles_named():
    """Re-framing every face (probability 1) of the partial style only: a partial-style face's eyes go to the
    rare framing, a full-style face's stay where they were; with both styles named, both move."""
    full_style = np.tile(np.arange(30.0, 60.0), (1, 1))  # all 15 keypoints labelled
    full_style[0, :4] = (64, 40, 32, 40)
    partial_style = np.full((1, 30), np.nan)
    partial_style[0, SPECIALISTS["partial"].columns] = full_style[0, SPECIALISTS["partial"].columns]
    points = np.concatenate([full_style, partial_style]).reshape(2, 15, 2)
    framing = FramingRange((6.0, 6.0), (83.0, 83.0), (80.0, 80.0), (0.0, 0.0), (0, 1), rare=((6.0, 83.0, 80.0),))
    for styles, moves in ((["partial"], [False, True]), (["full", "partial"], [True, True])):
        config = AugmentConfig(
            flip=0, rotate=0, scale=0, shift=0, brightness=0, contrast=0, framing=1.0, framing_styles=styles
        )
        _, moved = Augmenter(config, SPECIALISTS["full"].flip_permutation, framing)(
            np.zeros((2, 96, 96), np.uint8), points, seed=1
        )
        eye_distance = np.linalg.norm(moved[:, 0] - moved[:, 1], axis=1)
        np.testing.assert_allclose(eye_distance, np.where(moves, 6.0, 32.0), atol=0.05)
