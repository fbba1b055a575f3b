"""`fkp audit` and corrections.csv: planted label errors found at the top and named right; corrections applied
on load, in the fingerprint, validated in one line."""

import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import fkp
from PIL import Image
from synthetic_runs import write_run
from test_bad_input import assert_one_line_error

from competition import data
from competition.audit import audit_answers, near_duplicates, proposed_corrections
from competition.cli import _training_and_folds
from competition.corrections import apply_corrections
from competition.folds import make_folds
from competition.schema import COORDINATES

SWAP_ROW, SHIFT_ROW, MOVED_ROW = 8, 12, 19  # full-style faces of the sample (checked below)
SHIFT = (4.0, -3.0)
MOVED = ("nose_tip", (-9.0, 5.0))


def column(keypoint: str, axis: str) -> int:
    return COORDINATES.index(f"{keypoint}_{axis}")


def planted(keypoints: np.ndarray) -> np.ndarray:
    """The sample's labels with a left/right swap of the eye centres, a whole face shifted and one keypoint moved."""
    damaged = keypoints.copy()
    left, right = (
        [column("left_eye_center", "x"), column("left_eye_center", "y")],
        [
            column("right_eye_center", "x"),
            column("right_eye_center", "y"),
        ],
    )
    damaged[SWAP_ROW, left], damaged[SWAP_ROW, right] = keypoints[SWAP_ROW, right], keypoints[SWAP_ROW, left]
    damaged[SHIFT_ROW, 0::2] += SHIFT[0]
    damaged[SHIFT_ROW, 1::2] += SHIFT[1]
    keypoint, (dx, dy) = MOVED
    damaged[MOVED_ROW, column(keypoint, "x")] += dx
    damaged[MOVED_ROW, column(keypoint, "y")] += dy
    return damaged


@pytest.fixture(scope="module")
def clean(sample_dir):
    training = data.load_training(sample_dir)
    assert (training.style[[SWAP_ROW, SHIFT_ROW, MOVED_ROW]] == "full").all()
    return training


def noisy_answers(training, sigma: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Out-of-fold answers as a decent run gives them: the clean labels + N(0, sigma) px (the mean face where
    unlabelled)."""
    rng = np.random.default_rng(seed)
    truth = np.where(np.isnan(training.keypoints), np.nanmean(training.keypoints, axis=0), training.keypoints)
    return pd.DataFrame(truth + rng.normal(0, sigma, truth.shape), columns=list(COORDINATES))


def test_a_planted_swap_shift_and_moved_keypoint_rank_at_the_top_named_right(clean):
    damaged = data.TrainingSet(clean.images, planted(clean.keypoints), "damaged")
    findings = audit_answers(damaged, noisy_answers(clean), "synthetic").findings
    top = findings.head(3).set_index("row")
    assert set(top.index) == {SWAP_ROW, SHIFT_ROW, MOVED_ROW}, findings.head(6)
    assert top.loc[SWAP_ROW, "kind"] == "swap"
    assert {top.loc[SWAP_ROW, "keypoint"], top.loc[SWAP_ROW, "partner"]} == {"left_eye_center", "right_eye_center"}
    assert top.loc[SHIFT_ROW, "kind"] == "shift"
    assert top.loc[SHIFT_ROW, ["dx", "dy"]].to_numpy(float) == pytest.approx(SHIFT, abs=0.6)
    assert top.loc[MOVED_ROW, "kind"] == "misplaced"
    assert top.loc[MOVED_ROW, "keypoint"] == MOVED[0]
    # the CSV's label and answer are the face's, and rows are numbered from 0 as the folds file numbers them
    swap = top.loc[SWAP_ROW]
    keypoint = swap["keypoint"]
    assert swap["label_x"] == pytest.approx(damaged.keypoints[SWAP_ROW, column(keypoint, "x")], abs=1e-3)
    assert findings["rank"].tolist() == list(range(1, len(findings) + 1))


def test_a_clean_set_has_no_strong_finding(clean):
    findings = audit_answers(clean, noisy_answers(clean), "synthetic").findings
    assert findings["score"].max() < 6  # the planted errors above score 10 and more


def test_a_misplaced_keypoint_is_weighed_by_its_own_typical_miss(clean):
    """The same 5 px miss stands out on a keypoint answered within 0.3 px, not on one answered within 3 px."""
    answers = noisy_answers(clean, sigma=0.3)
    noisy = [column("mouth_center_bottom_lip", axis) for axis in "xy"]
    answers.iloc[:, noisy] = noisy_answers(clean, sigma=3.0, seed=1).iloc[:, noisy]
    damaged = clean.keypoints.copy()
    damaged[MOVED_ROW, column("nose_tip", "x")] += 5
    damaged[SWAP_ROW, column("mouth_center_bottom_lip", "x")] += 5
    findings = audit_answers(data.TrainingSet(clean.images, damaged, "x"), answers, "synthetic").findings
    rank = findings.set_index("row")["rank"]
    assert rank[MOVED_ROW] == 1
    assert rank[SWAP_ROW] > 10


def test_near_duplicates_are_found_without_comparing_every_pair(clean):
    images = clean.images[:40].copy()
    images[25] = np.clip(images[3].astype(int) + np.random.default_rng(0).integers(-3, 4, images[3].shape), 0, 255)
    pairs = {tuple(pair) for pair in near_duplicates(images)}
    assert (3, 25) in pairs
    assert all(b - a and images[a].std() > 0 for a, b in pairs)


def test_duplicates_with_conflicting_labels_are_named(clean):
    images = clean.images.copy()
    keypoints = clean.keypoints.copy()
    images[40] = images[SWAP_ROW]  # a repeat of a face with its eyes labelled 8 px further down
    keypoints[40] = clean.keypoints[SWAP_ROW]
    keypoints[40, [column("left_eye_center", "y"), column("right_eye_center", "y")]] += 8
    answers = noisy_answers(clean)
    answers.iloc[40] = answers.iloc[SWAP_ROW]
    eyes_y = [column("left_eye_center", "y"), column("right_eye_center", "y")]
    answers.iloc[[SWAP_ROW, 40], eyes_y] += 4  # the network learnt both labels of the photograph: halfway
    findings = audit_answers(data.TrainingSet(images, keypoints, "x"), answers, "synthetic").findings
    first = findings.iloc[0]
    assert first["kind"] == "duplicate-conflict"
    assert {first["row"], int(first["partner"])} == {40, SWAP_ROW}


def test_proposed_corrections_swap_back_and_drop(clean):
    damaged = data.TrainingSet(clean.images, planted(clean.keypoints), "damaged")
    findings = audit_answers(damaged, noisy_answers(clean), "synthetic").findings.head(3)
    proposal = proposed_corrections(findings, damaged)
    fixed = apply_corrections(damaged.keypoints, proposal)
    eyes = [column(k, a) for k in ("left_eye_center", "right_eye_center") for a in "xy"]
    assert fixed[SWAP_ROW, eyes] == pytest.approx(clean.keypoints[SWAP_ROW, eyes], abs=1e-3)
    nose = [column(MOVED[0], a) for a in "xy"]
    assert np.isnan(fixed[MOVED_ROW, nose]).all()
    assert (proposal["row"] != SHIFT_ROW).all()  # a shift has no mechanical fix


# --- corrections.csv ---


def write_corrections(folder, text: str) -> None:
    (folder / "corrections.csv").write_text(text)


def test_corrections_are_applied_on_load_and_change_the_fingerprint(sample_copy, clean, tmp_path):
    assert not np.isnan(clean.keypoints[[23, 29, 36]]).any()
    write_corrections(
        sample_copy,
        "row,keypoint,x,y,note\n23,left_eye_center,60.5,40.25,moved\n29,nose_tip,,,dropped\n36,all,,,face dropped\n",
    )
    corrected = data.load_training(sample_copy)
    assert corrected.corrections == 3
    assert corrected.keypoints[23, [column("left_eye_center", a) for a in "xy"]].tolist() == [60.5, 40.25]
    assert np.isnan(corrected.keypoints[29, [column("nose_tip", a) for a in "xy"]]).all()
    assert np.isnan(corrected.keypoints[36]).all()
    untouched = np.ones(len(clean), bool)
    untouched[[23, 29, 36]] = False
    assert np.array_equal(corrected.keypoints[untouched], clean.keypoints[untouched], equal_nan=True)
    assert corrected.fingerprint != clean.fingerprint
    assert corrected.source_fingerprint == clean.fingerprint
    # `fkp cv` loads them, on the same folds as the uncorrected labels
    training, split = _training_and_folds(sample_copy, False, tmp_path / "folds", 3, 42, None)
    assert training.fingerprint == corrected.fingerprint
    assert np.isnan(training.keypoints[36]).all()
    assert np.array_equal(split.fold, make_folds(clean, 3, 42).fold)
    result = fkp("check", "--data", sample_copy)
    assert result.exit_code == 0, result.output
    assert "3 corrections applied" in result.stdout


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("row,keypoint,x,y\n300,nose_tip,40,40\n", ["line 2, column row", "'300' is not a training row (0..299"]),
        ("row,keypoint,x,y\n1,nose_tip,40,40\n2,left_ear,40,40\n", ["line 3, column keypoint", "'left_ear'"]),
        ("row,keypoint,x,y\n1,nose_tip,40,96.5\n", ["line 2, column y", "outside the image (0..96)"]),
        ("row,keypoint,x,y\n1,nose_tip,-1,40\n", ["line 2, column x", "outside the image"]),
        ("row,keypoint,x,y\n1,nose_tip,40,\n", ["line 2, column y", "both x and y"]),
        ("row,keypoint,x,y\n1,nose_tip,4o,40\n", ["line 2, column x", "'4o' is not a number"]),
        ("row,keypoint,x,y\n1,nose_tip,,\n1,nose_tip,40,40\n", ["line 3, column keypoint", "line 2"]),
        ("row,keypoint,x\n1,nose_tip,40\n", ["line 1", "columns"]),
        ("", ["file is empty"]),
    ],
)
def test_a_bad_corrections_file_is_refused_in_one_line(sample_copy, text, fragments):
    write_corrections(sample_copy, text)
    assert_one_line_error(fkp("check", "--data", sample_copy), "corrections.csv", *fragments)


# --- the command ---


@pytest.fixture(scope="module")
def audited(tmp_path_factory, sample_dir, clean):
    """`fkp audit` of a run on a damaged copy of the sample whose answers follow the clean labels."""
    folder = tmp_path_factory.mktemp("damaged")
    for name in ("test.zip", "IdLookupTable.csv"):
        (folder / name).write_bytes((sample_dir / name).read_bytes())
    frame = pd.read_csv(sample_dir / "training.zip", dtype=str, keep_default_na=False)
    damaged = planted(clean.keypoints)
    for c, name in enumerate(COORDINATES):
        changed = ~np.isnan(damaged[:, c]) & (damaged[:, c] != clean.keypoints[:, c])
        frame.loc[changed, name] = [f"{v:.4f}" for v in damaged[changed, c]]
    with zipfile.ZipFile(folder / "training.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("training.csv", frame.to_csv(index=False))
    loaded = data.load_training(folder)
    runs_dir = tmp_path_factory.mktemp("runs")
    # the run's out-of-fold answers follow the clean labels (+ noise), as a network's would
    answering = data.TrainingSet(clean.images, clean.keypoints, loaded.fingerprint)
    write_run(
        runs_dir / "r",
        answering,
        data.load_test(sample_dir),
        make_folds(clean, 3, 42),
        noise=1.0,
        tta_noise=0.8,
        seed=0,
        model=b"never loaded",  # the audit reads predictions only: no Keras in this test
    )
    result = fkp(
        "audit", "--data", folder, "--run", "r", "--runs-dir", runs_dir, "--limit", 25, "--propose-corrections"
    )
    assert result.exit_code == 0, result.output
    return folder, runs_dir, result


def test_the_audit_writes_ranked_csv_sheets_index_and_a_proposal(audited, clean):
    folder, runs_dir, result = audited
    out = runs_dir / "r" / "audit"
    findings = pd.read_csv(out / "findings.csv", keep_default_na=False)
    assert list(findings.columns[:9]) == [
        "rank",
        "row",
        "kind",
        "keypoint",
        "label_x",
        "label_y",
        "prediction_x",
        "prediction_y",
        "score",
    ]
    assert len(findings) == 25
    assert set(findings["row"].head(3)) == {SWAP_ROW, SHIFT_ROW, MOVED_ROW}
    sheets = sorted(out.glob("sheet-*.png"))
    assert [s.name for s in sheets] == ["sheet-1.png", "sheet-2.png"]  # 20 faces a page
    with Image.open(sheets[0]) as picture:
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    assert picture.width > 600 and picture.height > 900
    green = (pixels[..., 1] > 180) & (pixels[..., 0] < 80) & (pixels[..., 2] < 120)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert green.sum() > 200 and red.sum() > 200  # labels and answers drawn in two colours
    index = (out / "index.md").read_text()
    assert "sheet-1.png" in index and "sheet-2.png" in index and f"| 1 | {findings['row'][0]} |" in index
    proposal = pd.read_csv(out / "corrections.proposed.csv")
    assert {SWAP_ROW, MOVED_ROW} <= set(proposal["row"])
    assert not (folder / "corrections.csv").exists()  # a proposal, never applied by itself
    # the proposal, renamed, is a valid corrections file that undoes the swap
    (folder / "corrections.csv").write_bytes((out / "corrections.proposed.csv").read_bytes())
    try:
        corrected = data.load_training(folder)
    finally:
        (folder / "corrections.csv").unlink()
    eyes = [column(k, a) for k in ("left_eye_center", "right_eye_center") for a in "xy"]
    assert corrected.keypoints[SWAP_ROW, eyes] == pytest.approx(clean.keypoints[SWAP_ROW, eyes], abs=1e-3)


def test_the_audit_of_a_run_on_other_data_is_refused_in_one_line(audited, sample_dir):
    _, runs_dir, _ = audited
    assert_one_line_error(
        fkp("audit", "--data", sample_dir, "--run", "r", "--runs-dir", runs_dir), "run.json", "trained on other data"
    )


def test_a_run_without_the_corrections_is_refused_once_they_apply(audited):
    folder, runs_dir, _ = audited
    write_corrections(folder, "row,keypoint,x,y\n1,nose_tip,,\n")
    try:
        result = fkp("audit", "--data", folder, "--run", "r", "--runs-dir", runs_dir)
    finally:
        (folder / "corrections.csv").unlink()
    assert_one_line_error(result, "run.json", "without the 1 corrections")
