import numpy as np

from competition.schema import (
    COORDINATES,
    FLIP_PAIRS,
    KEYPOINTS,
    MIRROR_AXIS,
    SPECIALISTS,
    STYLES,
    specialist_for,
    style_of,
)


def test_fifteen_keypoints_thirty_coordinates_in_kaggle_order():
    assert len(KEYPOINTS) == 15 and len(COORDINATES) == 30
    assert COORDINATES[:2] == ("left_eye_center_x", "left_eye_center_y")
    assert COORDINATES[-1] == "mouth_center_bottom_lip_y"


def test_flip_pairs_join_left_to_right_names():
    paired = [k for pair in FLIP_PAIRS for k in pair]
    assert len(paired) == len(set(paired)) == 12
    for left, right in FLIP_PAIRS:
        assert left.replace("left", "right") == right


def test_specialists():
    assert SPECIALISTS["full"].coordinates == COORDINATES
    assert SPECIALISTS["partial"].coordinates == (
        "left_eye_center_x",
        "left_eye_center_y",
        "right_eye_center_x",
        "right_eye_center_y",
        "nose_tip_x",
        "nose_tip_y",
        "mouth_center_bottom_lip_x",
        "mouth_center_bottom_lip_y",
    )
    assert list(SPECIALISTS["partial"].columns) == [0, 1, 2, 3, 20, 21, 28, 29]
    assert specialist_for("nose_tip_y") == "partial"
    assert specialist_for("mouth_left_corner_x") == "full"
    assert specialist_for("nose_tip_y", trained=["full", "partial"]) == "partial"
    assert specialist_for("mouth_left_corner_x", trained=["full", "partial"]) == "full"
    assert specialist_for("nose_tip_y", trained=["full"]) == "full"
    assert specialist_for("nose_tip_y", trained=["full", "partial"], prefer=["full", "partial"]) == "full"


def test_a_faces_style_is_the_smallest_style_that_holds_its_labels():
    assert set(STYLES) == {"full", "partial"}
    assert STYLES["partial"].coordinates == SPECIALISTS["partial"].coordinates
    labelled = np.zeros((4, 30), bool)
    labelled[0] = True  # all 30
    labelled[1, [0, 1, 2, 3, 20, 21, 28, 29]] = True  # the partial eight
    labelled[2, [0, 1, 4, 5]] = True  # an eye centre and an inner corner: beyond the partial style
    # row 3: nothing labelled
    assert list(style_of(labelled)) == ["full", "partial", "full", "partial"]


def test_flip_permutation_swaps_pairs_and_is_its_own_inverse():
    for specialist in SPECIALISTS.values():
        permutation = specialist.flip_permutation
        assert (permutation[permutation] == np.arange(len(permutation))).all()
    partial = SPECIALISTS["partial"]
    assert list(partial.flip_permutation) == [1, 0, 2, 3]
    full = SPECIALISTS["full"]
    assert full.keypoints[full.flip_permutation[KEYPOINTS.index("mouth_left_corner")]] == "mouth_right_corner"
    assert MIRROR_AXIS == 97  # 1-based pixel centres, as measured on this data
