import csv
import zipfile

import numpy as np
import pandas as pd
import pytest

from competition import data
from competition.errors import InputError
from competition.schema import COORDINATES, STYLES


def test_vectorised_parse_matches_a_plain_split_on_real_rows(sample_dir):
    frame = pd.read_csv(sample_dir / "training.zip")
    strings = frame["Image"].to_numpy()[:40]
    expected = np.stack([np.array(s.split(), dtype=np.uint8) for s in strings]).reshape(-1, 96, 96)
    assert np.array_equal(data.parse_pixels(strings, "x"), expected)


def test_extra_spaces_between_pixels_are_allowed(sample_dir):
    strings = pd.read_csv(sample_dir / "training.zip")["Image"].to_numpy()[:3]
    expected = np.stack([np.array(s.split(), dtype=np.uint8) for s in strings]).reshape(-1, 96, 96)
    spaced = np.array([" " + strings[0].replace(" ", "  "), strings[1] + "  ", strings[2]], dtype=object)
    assert np.array_equal(data.parse_pixels(spaced, "x"), expected)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: "0012 " + s.split(" ", 1)[1], "pixel '0012' has more than 3 digits"),
        (lambda s: s.replace(" ", "\t", 1), "is not a whole number 0..255"),
        (lambda s: s.replace(" ", "\n", 1), "is not a whole number 0..255"),
        (lambda s: s + " 7", "9217 pixels, expected 9216"),
        (lambda s: "300 " + s.split(" ", 1)[1], "pixel 300 is outside 0..255"),
    ],
)
def test_a_bad_row_past_the_first_chunk_is_named_by_its_line(sample_dir, damage, message):
    strings = pd.read_csv(sample_dir / "training.zip")["Image"].to_numpy()[:40].copy()
    strings[37] = damage(strings[37])
    with pytest.raises(InputError) as raised:
        data.parse_pixels(strings, "training.csv")
    assert "line 39" in str(raised.value) and message in str(raised.value)


def test_training_set_matches_the_csv(sample_dir, training):
    frame = pd.read_csv(sample_dir / "training.zip")
    np.testing.assert_array_equal(training.keypoints, frame[list(COORDINATES)].to_numpy(np.float32))
    assert training.images.shape == (300, 96, 96) and training.images.dtype == np.uint8
    full = frame[list(COORDINATES)].notna().sum(axis=1) > 8
    assert ((training.style == "full") == full.to_numpy()).all()
    assert set(training.style) == {"full", "partial"}


def test_a_test_faces_style_is_read_from_what_idlookuptable_asks():
    lookup = pd.DataFrame(
        {
            "RowId": range(1, 39),
            "ImageId": [7] * 30 + [9] * 8,
            "FeatureName": [
                *COORDINATES,
                "left_eye_center_x",
                "left_eye_center_y",
                "right_eye_center_x",
                "right_eye_center_y",
                "nose_tip_x",
                "nose_tip_y",
                "mouth_center_bottom_lip_x",
                "mouth_center_bottom_lip_y",
            ],
        }
    )
    styles = data.lookup_styles(lookup)
    assert styles.to_dict() == {7: "full", 9: "partial"}


def test_test_styles_follow_what_is_asked_beyond_the_partial_eight(data_dir):
    """Kaggle asks a partial-style face for (up to) its 8 coordinates, a full-style one for more (up to 30)."""
    test = data.load_test(data_dir)
    lookup = data.load_lookup(data_dir, test)
    beyond = ~lookup["FeatureName"].isin(STYLES["partial"].coordinates)
    asks_more = beyond.groupby(lookup["ImageId"]).any()
    styles = data.lookup_styles(lookup)
    assert len(styles) == len(test) and ((styles == "full") == asks_more).all()


def test_extracted_csvs_load_like_the_zips(tmp_path, sample_dir, training):
    for stem in ("training", "test"):
        with zipfile.ZipFile(sample_dir / f"{stem}.zip") as archive:
            archive.extract(f"{stem}.csv", tmp_path)
    (tmp_path / "IdLookupTable.csv").write_bytes((sample_dir / "IdLookupTable.csv").read_bytes())
    from_csv = data.load_training(tmp_path)
    assert np.array_equal(from_csv.images, training.images)
    assert from_csv.fingerprint == training.fingerprint
    test = data.load_test(tmp_path)
    assert len(data.load_lookup(tmp_path, test)) == 1800


@pytest.mark.parametrize("dialect", [{"lineterminator": "\r\n"}, {"quoting": csv.QUOTE_ALL}])
def test_csvs_pandas_has_to_read_whole_load_like_the_zips(tmp_path, sample_dir, training, dialect):
    """Quoted fields or CRLF line ends take pandas' path, not the plain-file one, to the same arrays."""
    frame = pd.read_csv(sample_dir / "training.zip", dtype=str)
    frame.to_csv(tmp_path / "training.csv", index=False, **dialect)
    loaded = data.load_training(tmp_path)
    assert np.array_equal(loaded.images, training.images)
    np.testing.assert_array_equal(loaded.keypoints, training.keypoints)


def test_second_load_comes_from_the_cache(sample_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FKP_CACHE_DIR", str(tmp_path))
    first = data.load_training(sample_dir)
    assert len(list(tmp_path.glob("training-*.npz"))) == 1

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(data, "parse_pixels", no_parsing)
    again = data.load_training(sample_dir)
    assert np.array_equal(first.images, again.images) and first.fingerprint == again.fingerprint


def test_changed_file_is_parsed_again(sample_copy, cache):
    frame = pd.read_csv(sample_copy / "training.zip").iloc[:20]
    (sample_copy / "training.zip").unlink()
    frame.to_csv(sample_copy / "training.csv", index=False)
    assert len(data.load_training(sample_copy)) == 20


def test_resolve_data_dir_falls_back_to_the_sample(tmp_path):
    folder, is_sample = data.resolve_data_dir(None, default=tmp_path / "nothing")
    assert is_sample and (folder / "training.zip").exists()
    assert data.resolve_data_dir(tmp_path, default=tmp_path) == (tmp_path, False)


def test_lookup_rows_without_the_empty_trailing_location_load(sample_dir, tmp_path):
    """Kaggle's IdLookupTable.csv writes "1,1,left_eye_center_x" under a 4-column header."""
    rows = pd.read_csv(sample_dir / "IdLookupTable.csv")
    lines = ["RowId,ImageId,FeatureName,Location"] + [
        f"{r.RowId},{r.ImageId},{r.FeatureName}" for r in rows.itertuples()
    ]
    (tmp_path / "IdLookupTable.csv").write_text("\n".join(lines) + "\n")
    for name in ("training.zip", "test.zip"):
        (tmp_path / name).write_bytes((sample_dir / name).read_bytes())
    lookup = data.load_lookup(tmp_path, data.load_test(tmp_path))
    assert lookup["RowId"].tolist() == rows["RowId"].tolist()
    assert lookup["FeatureName"].tolist() == rows["FeatureName"].tolist()
