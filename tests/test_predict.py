"""`fkp predict` on photographs: framing geometry (quick) and a trained run on a real portrait (slow)."""

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import fkp
from PIL import Image
from skimage import data as skimage_data

from competition import data
from competition.predict import ANCHORS, crop_face, frame_matrix, load_framing, measure_framing, photo_paths, to_photo
from competition.schema import COORDINATES, FIRST_PIXEL_CENTRE, IMAGE_SIZE, KEYPOINTS


def fkp_lines(result) -> list[str]:
    """fkp's own lines on stderr (TensorFlow's C++ start-up notes, which no setting silences, left out);
    never a traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("fkp: ")]


def test_the_stored_framing_is_what_the_training_labels_and_the_detector_give(training):
    """framing.toml was measured on the competition data; the bundled sample's first 30 faces agree with it."""
    stored, measured = load_framing(), measure_framing(training.head(30))
    assert measured["detected"] >= 25
    in_face = np.array([measured["in_face"][k] for k in ANCHORS])
    in_box = np.array([measured["in_box"][k] for k in ANCHORS])
    np.testing.assert_allclose(in_face, stored.in_face, atol=1.0)
    np.testing.assert_allclose(in_box, stored.in_box, atol=0.015)
    left, right, lip = stored.in_face
    assert left[0] > IMAGE_SIZE / 2 > right[0] and lip[1] > left[1] + 30  # the subject's left on the image's right


def test_a_face_framed_out_of_a_rotated_enlarged_photo_is_the_face_and_its_points_map_back(training):
    """Put a competition face into a bigger photo, rotated 12 degrees and 3.5 times larger; framing on its
    transformed anchors gives back the face (pixels), and mapping keypoints back lands on the photo's points."""
    face, points = training.images[0], training.keypoints[0]
    assert not np.isnan(points).any()
    angle, scale = np.deg2rad(12), 3.5
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    into_photo = np.vstack([np.hstack([rotation, [[200.0], [120.0]]]), [0, 0, 1]])  # array pixels
    photo = cv2.warpAffine(face, into_photo[:2], (600, 600), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    in_photo = to_photo(points, np.linalg.inv(into_photo))
    anchors = in_photo.reshape(-1, 2)[[KEYPOINTS.index(k) for k in ANCHORS]]
    framing = load_framing()
    matrix = frame_matrix(anchors, framing)
    # the anchors land on the framing's positions, up to the face's own differences from the mean face
    framed = to_photo(in_photo, np.linalg.inv(matrix)).reshape(-1, 2)[[KEYPOINTS.index(k) for k in ANCHORS]]
    assert np.abs(framed - framing.in_face).max() < 6
    # framing on the face's own anchors undoes the photo's transform: the same face, the same points
    own = type(framing)(points.reshape(-1, 2)[[KEYPOINTS.index(k) for k in ANCHORS]], framing.in_box)
    matrix = frame_matrix(anchors, own)
    np.testing.assert_allclose(matrix, np.linalg.inv(into_photo), atol=1e-6)
    crop = crop_face(photo, matrix).astype(float)
    assert np.abs(crop - face)[8:-8, 8:-8].mean() < 6  # resampled twice; the border is replicated
    np.testing.assert_allclose(to_photo(points, matrix), in_photo, atol=1e-6)


def test_a_folder_stands_for_its_files(tmp_path):
    for name in ("b.png", "a.jpg", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in photo_paths([tmp_path])] == ["a.jpg", "b.png", "notes.txt"]


def test_predict_with_a_missing_run_is_one_line_and_exit_2(tmp_path):
    result = fkp("predict", tmp_path, "--run", "nope", "--runs-dir", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"fkp: {tmp_path / 'nope'}: not a run folder (no run.json): run `fkp cv` first"
    ]


@pytest.mark.slow
class TestOnARealPortrait:
    """`fkp predict` with a small trained run on scikit-image's astronaut (Eileen Collins, public domain)."""

    @pytest.fixture(scope="class")
    @classmethod
    def predicted(cls, learned_run, run_data, tmp_path_factory):
        photos = tmp_path_factory.mktemp("photos")
        Image.fromarray(skimage_data.astronaut()).save(photos / "astronaut.jpg", quality=92)
        Image.fromarray(np.full((200, 300), 128, np.uint8)).save(photos / "wall.png")  # no face
        (photos / "notes.txt").write_text("not a photo\n")
        result = fkp(
            "predict", photos, "--run", "learned", "--runs-dir", learned_run / "runs", "--out", learned_run / "out"
        )
        return result, learned_run / "out"

    def test_one_face_with_both_eyes_in_the_upper_half_of_its_box_on_the_correct_sides(self, predicted):
        result, out = predicted
        table = pd.read_csv(out / "predictions.csv").set_index("photo")
        row = table.loc[[p for p in table.index if p.endswith("astronaut.jpg")]]
        assert len(row) == 1 and row["face"].iloc[0] == 1, result.stdout + result.stderr
        row = row.iloc[0]
        x, y, w, h = row[["box_x", "box_y", "box_w", "box_h"]]
        centre = x + w / 2 + FIRST_PIXEL_CENTRE
        for eye, side in (("left_eye_center", 1), ("right_eye_center", -1)):  # the subject's left: image right
            ex, ey = row[f"{eye}_x"] - FIRST_PIXEL_CENTRE, row[f"{eye}_y"] - FIRST_PIXEL_CENTRE
            assert x <= ex <= x + w and y <= ey <= y + h / 2, (eye, ex, ey, (x, y, w, h))
            assert side * (ex + FIRST_PIXEL_CENTRE - centre) > w / 10, (eye, ex, centre)
        assert row[list(COORDINATES)].notna().all()

    def test_a_photo_without_a_face_is_a_row_and_a_line_not_an_error(self, predicted):
        result, out = predicted
        table = pd.read_csv(out / "predictions.csv")
        wall = table[table["photo"].str.endswith("wall.png")]
        assert wall["face"].tolist() == [0] and wall[list(COORDINATES)].isna().all(axis=None)
        assert any("wall.png: no face found" in line for line in result.stdout.splitlines())

    def test_a_file_that_is_not_an_image_is_one_line_and_the_others_are_done(self, predicted):
        result, out = predicted
        assert result.exit_code == 2
        lines = fkp_lines(result)
        assert len(lines) == 1 and lines[0].endswith("notes.txt: not a readable JPEG or PNG image"), lines
        assert (out / "astronaut.png").stat().st_size > 100_000 and (out / "wall.png").exists()


@pytest.mark.slow
def test_no_detect_on_test_faces_gives_the_numbers_blend_averages(learned_run, run_data, tmp_path):
    """96x96 crops taken as they are: the same numbers as `fkp blend`'s fold average of the run's test files."""
    from competition.blend import test_answers
    from competition.run import Run

    test = data.load_test(run_data)
    shown = test.image_ids[:64]  # 64 faces, or all the bundled sample's 60
    for image_id, face in zip(shown, test.images[:64]):
        Image.fromarray(face).save(tmp_path / f"{image_id:05d}.png")
    result = fkp(
        "predict",
        tmp_path,
        "--run",
        "learned",
        "--runs-dir",
        learned_run / "runs",
        "--no-detect",
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    run = Run(learned_run / "runs" / "learned")
    full_style = pd.Series("full", index=test.image_ids)  # a photo's face is asked for all 30 coordinates
    expected = test_answers(run, run.spec.resolved.inference.tta, False, full_style).loc[shown]
    assert table["face"].eq(1).all() and len(table) == len(shown)
    np.testing.assert_allclose(table[list(COORDINATES)].to_numpy(), expected.to_numpy(), atol=1e-3)


@pytest.mark.slow
def test_an_unreadable_image_is_one_line_naming_it(learned_run, run_data, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = fkp("predict", broken, "--run", "learned", "--runs-dir", learned_run / "runs", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert fkp_lines(result) == [f"fkp: {broken}: not a readable JPEG or PNG image"]
