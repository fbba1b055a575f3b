"""Every bad input ends with one line naming the file (line, column), exit status 2, no traceback."""

import zipfile

import pandas as pd
import pytest
from conftest import fkp, small_competition_folder


@pytest.fixture
def small(tmp_path, sample_dir):
    """A small extracted copy of the sample, as CSVs that tests can damage."""
    return small_competition_folder(sample_dir, tmp_path / "small", 20, 5)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def damage(path, row, column, value):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


def test_the_small_copy_is_valid(small):
    result = fkp("check", "--data", small)
    assert result.exit_code == 0, result.output
    assert "20 training faces" in result.stdout


def test_missing_data_folder(tmp_path):
    assert_one_line_error(fkp("check", "--data", tmp_path / "nope"), "nope", "data folder not found")


def test_missing_file(small):
    (small / "test.csv").unlink()
    assert_one_line_error(fkp("check", "--data", small), "test.csv", "missing")


def test_zip_without_the_expected_csv(small):
    with zipfile.ZipFile(small / "training.zip", "w") as archive:
        archive.writestr("other.csv", "a,b\n1,2\n")
    (small / "training.csv").unlink()
    assert_one_line_error(fkp("check", "--data", small), "training.zip", "does not hold training.csv")


@pytest.mark.parametrize("start, reason", [(True, "Invalid deflate block"), (False, "bad CRC")])
def test_corrupt_zip_member(small, start, reason):
    with zipfile.ZipFile(small / "training.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(small / "training.csv", "training.csv")
    (small / "training.csv").unlink()
    content = bytearray((small / "training.zip").read_bytes())
    at = 30 + len("training.csv") if start else len(content) // 2  # the deflated data's start, or its middle
    content[at : at + 8] = b"\xff" * 8
    (small / "training.zip").write_bytes(content)
    assert_one_line_error(fkp("check", "--data", small), "training.zip", "not a valid zip file", reason)


def test_renamed_column(small):
    frame = pd.read_csv(small / "training.csv", dtype=str)
    frame.rename(columns={"nose_tip_x": "nose_x"}).to_csv(small / "training.csv", index=False)
    assert_one_line_error(fkp("check", "--data", small), "training.csv", "nose_tip_x", "nose_x")


def test_row_with_a_missing_field(small):
    lines = (small / "test.csv").read_text().splitlines()
    lines[3] = lines[3].split(",")[1]  # line 4 loses its ImageId: its pixels land in ImageId
    (small / "test.csv").write_text("\n".join(lines) + "\n")
    result = fkp("check", "--data", small)
    assert_one_line_error(result, "test.csv", "line 4", "column ImageId", "is not a number")
    assert len(result.stderr) < 300  # the pixel string is not echoed whole


def test_row_with_an_extra_field(small):
    lines = (small / "IdLookupTable.csv").read_text().splitlines()
    lines[5] += ",7"
    (small / "IdLookupTable.csv").write_text("\n".join(lines) + "\n")
    assert_one_line_error(fkp("check", "--data", small), "IdLookupTable.csv", "line 6", "saw 5")


def test_pixel_string_of_the_wrong_length(small):
    frame = pd.read_csv(small / "training.csv", dtype=str)
    damage(small / "training.csv", 6, "Image", frame.loc[6, "Image"].rsplit(" ", 1)[0])
    assert_one_line_error(fkp("check", "--data", small), "training.csv", "line 8", "column Image", "9215 pixels")


def test_non_numeric_pixel(small):
    frame = pd.read_csv(small / "test.csv", dtype=str)
    damage(small / "test.csv", 2, "Image", frame.loc[2, "Image"].replace(" ", " 1x ", 1).rsplit(" ", 1)[0])
    assert_one_line_error(fkp("check", "--data", small), "test.csv", "line 4", "column Image", "'1x'")


def test_pixel_outside_0_255(small):
    frame = pd.read_csv(small / "training.csv", dtype=str)
    damage(small / "training.csv", 3, "Image", "256 " + frame.loc[3, "Image"].split(" ", 1)[1])
    assert_one_line_error(fkp("check", "--data", small), "line 5", "column Image", "256", "0..255")


def test_coordinate_outside_the_image(small):
    damage(small / "training.csv", 9, "nose_tip_y", "101.5")
    assert_one_line_error(fkp("check", "--data", small), "training.csv", "line 11", "column nose_tip_y", "101.5")


def test_non_numeric_coordinate(small):
    damage(small / "training.csv", 1, "left_eye_center_x", "abc")
    assert_one_line_error(fkp("check", "--data", small), "line 3", "column left_eye_center_x", "'abc'")


def test_empty_file(small):
    (small / "IdLookupTable.csv").write_text("")
    assert_one_line_error(fkp("check", "--data", small), "IdLookupTable.csv", "empty")


def test_header_only_file(small):
    (small / "test.csv").write_text("ImageId,Image\n")
    assert_one_line_error(fkp("check", "--data", small), "test.csv", "no rows")


def test_lookup_with_unknown_image_id(small):
    damage(small / "IdLookupTable.csv", 4, "ImageId", "999")
    assert_one_line_error(fkp("check", "--data", small), "IdLookupTable.csv", "line 6", "column ImageId", "999")


def test_lookup_with_an_empty_image_id(small):
    damage(small / "IdLookupTable.csv", 2, "ImageId", "")
    assert_one_line_error(
        fkp("check", "--data", small), "IdLookupTable.csv", "line 4", "column ImageId", "an empty value is not a number"
    )


def test_lookup_with_unknown_feature_name(small):
    damage(small / "IdLookupTable.csv", 0, "FeatureName", "left_ear_x")
    assert_one_line_error(fkp("check", "--data", small), "line 2", "column FeatureName", "left_ear_x")


def test_config_with_unknown_key(small, tmp_path):
    (tmp_path / "bad.toml").write_text("[train]\nepoks = 3\n")
    result = fkp("cv", "--data", small, "--config", tmp_path / "bad.toml", "--runs-dir", tmp_path / "runs")
    assert_one_line_error(result, "bad.toml", "unknown key 'train.epoks'")
    assert not (tmp_path / "runs").exists()


def test_config_with_wrong_type(small, tmp_path):
    (tmp_path / "bad.toml").write_text("[model]\ndropout = 'lots'\n")
    result = fkp("cv", "--data", small, "--config", tmp_path / "bad.toml")
    assert_one_line_error(result, "bad.toml", "model.dropout", "float")


def test_one_fold(small, tmp_path):
    result = fkp("cv", "--data", small, "--folds", 1, "--folds-dir", tmp_path)
    assert_one_line_error(result, "--folds", "at least 2")
    assert_one_line_error(fkp("folds", "--data", small, "--folds", 1, "--folds-dir", tmp_path), "--folds")
    assert not list(tmp_path.glob("*.csv"))


def test_fold_beyond_folds(small, tmp_path):
    result = fkp("cv", "--data", small, "--folds", 3, "--fold", 3, "--folds-dir", tmp_path)
    assert_one_line_error(result, "--fold", "0..2")


def test_fold_beyond_default_folds(small, tmp_path):
    result = fkp("cv", "--data", small, "--fold", 5, "--folds-dir", tmp_path, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(result, "--fold", "0..4")


def test_stored_folds_are_not_overwritten_silently(small, tmp_path):
    assert fkp("folds", "--data", small, "--folds", 2, "--folds-dir", tmp_path).exit_code == 0
    before = (tmp_path / "small-k2.csv").read_bytes()
    assert_one_line_error(
        fkp("folds", "--data", small, "--folds", 2, "--seed", 3, "--folds-dir", tmp_path), "--overwrite"
    )
    assert (tmp_path / "small-k2.csv").read_bytes() == before
    assert (
        fkp("folds", "--data", small, "--folds", 2, "--seed", 3, "--overwrite", "--folds-dir", tmp_path).exit_code == 0
    )
    assert (tmp_path / "small-k2.csv").read_bytes() != before


def test_bad_lookup_leaves_an_existing_submission_alone(small, tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("RowId,Location\n1,42\n")
    damage(small / "IdLookupTable.csv", 2, "FeatureName", "chin_x")
    assert_one_line_error(fkp("blend", "--data", small, "--out", out, "--runs-dir", tmp_path), "chin_x")
    assert out.read_text() == "RowId,Location\n1,42\n"


def test_blend_of_a_missing_run(small, tmp_path):
    assert_one_line_error(fkp("blend", "--data", small, "--run", "ghost", "--runs-dir", tmp_path), "ghost", "run.json")


@pytest.mark.parametrize(
    "name, row, column, value, where, message",
    [
        ("IdLookupTable.csv", 6, "RowId", "3", "line 8", "RowId 3 repeats line 4"),
        ("test.csv", 4, "ImageId", "2", "line 6", "ImageId 2 repeats line 3"),
    ],
    ids=["lookup RowId", "test ImageId"],
)
def test_a_repeated_key_is_refused(small, name, row, column, value, where, message):
    damage(small / name, row, column, value)
    assert_one_line_error(fkp("check", "--data", small), name, where, f"column {column}", message)


def test_check_counts_repeated_training_rows(small):
    lines = (small / "training.csv").read_text().splitlines(keepends=True)
    (small / "training.csv").write_text("".join([*lines, lines[3], lines[5], lines[3]]))
    result = fkp("check", "--data", small)
    assert result.exit_code == 0, result.output
    assert "23 training faces" in result.stdout
    assert "3 training rows repeat an earlier row" in result.stdout
