"""The product as a user runs it: `fkp cv` then `fkp blend`, through the installed entry point."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

FKP = [sys.executable, "-m", "competition"]
pytestmark = pytest.mark.slow  # every test here trains through `fkp cv`
SMOKE = ("--folds", 2, "--epochs", 1, "--limit", 200, "--config", "smoke")  # the smoke run's settings


def fkp(*args, cwd):
    return subprocess.run([*FKP, *map(str, args)], cwd=cwd, capture_output=True, text=True, env=os.environ.copy())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, run_data):
    """`fkp cv --folds 2 --epochs 1 --limit 200` on real data, then `fkp blend`."""
    work = tmp_path_factory.mktemp("work")
    cv = fkp(
        "cv",
        "--data",
        run_data,
        *SMOKE,
        "--run",
        "smoke",
        cwd=work,
    )
    assert cv.returncode == 0, cv.stdout + cv.stderr
    assert cv.stderr == "", cv.stderr  # fkp's own lines only: no backend start-up or retracing lines
    blend = fkp("blend", "--data", run_data, "--run", "smoke", cwd=work)
    assert blend.returncode == 0, blend.stdout + blend.stderr
    assert blend.stderr == "", blend.stderr
    return work, cv.stdout


def test_cv_ends_with_the_leaderboard_rmse_and_its_table_names_styles_and_networks(smoke_run, run_data):
    """cv_rmse is the RMSE of the leaderboard mix over every labelled coordinate, recomputed here from the
    run's own out-of-fold files: the partial network's 8 coordinates, the full network's other 22."""
    from competition.data import load_training
    from competition.run import Run

    work, out = smoke_run
    last = out.strip().splitlines()[-1]
    assert last.startswith("cv_rmse=")
    oof = Run(work / "runs" / "smoke").oof("tta")
    rows = oof["full"].index.intersection(oof["partial"].index)
    mixed = oof["full"].loc[rows].drop(columns="fold")
    partial = [c for c in oof["partial"].columns if c != "fold"]
    mixed[partial] = oof["partial"].loc[rows, partial]
    truth = load_training(run_data).keypoints[:200][rows]
    labelled = ~np.isnan(truth)
    expected = np.sqrt(np.mean((mixed.to_numpy() - truth)[labelled] ** 2))
    assert abs(float(last.removeprefix("cv_rmse=")) - expected) < 1e-4
    assert "OOF RMSE per keypoint" in out
    for column in ("all faces", "full-style", "partial-style", "full net", "partial net"):
        assert column in out


def test_a_short_cpu_run_beats_the_mean_face_by_a_tenth(learned_run, run_data):
    """A model that learns nothing predicts about the training folds' mean face. Ten epochs of the CPU
    profile's networks on 600 faces (``learned_run``) must beat that predictor's RMSE, on the same folds, by
    at least 10%."""
    from competition.data import load_training

    keypoints = load_training(run_data).keypoints
    if len(keypoints) < 600:
        pytest.skip("the bundled sample's faces are too few for 10 epochs to learn from; needs ../shared/fkp-data")
    cv_rmse = float((learned_run / "cv.out").read_text().strip().splitlines()[-1].removeprefix("cv_rmse="))
    fold = pd.read_csv(next((learned_run / "folds").glob("*-k2.csv")))["fold"].to_numpy()[: len(keypoints)]
    mean_face = np.empty_like(keypoints)
    for k in (0, 1):
        mean_face[fold == k] = np.nanmean(keypoints[fold != k], axis=0)
    labelled = ~np.isnan(keypoints)
    mean_rmse = np.sqrt(np.mean((mean_face - keypoints)[labelled] ** 2))
    assert cv_rmse <= 0.9 * mean_rmse, (cv_rmse, mean_rmse)


def test_each_folds_reframing_ranges_come_from_its_training_faces_alone(learned_run, run_data):
    """``learned_run`` re-frames at q = 0.25: each fold's fold.json holds the middle half of the framings of its
    own training faces, labelled for the specialist, and not those of the faces it validates on."""
    import json

    from competition.augment import FramingRange
    from competition.data import load_training
    from competition.schema import SPECIALISTS

    keypoints = load_training(run_data).keypoints
    fold = pd.read_csv(next((learned_run / "folds").glob("*-k2.csv")))["fold"].to_numpy()[: len(keypoints)]
    for name in ("full", "partial"):
        for k in (0, 1):
            report = json.loads((learned_run / "runs" / "learned" / name / f"fold{k}" / "fold.json").read_text())
            own, other = (
                FramingRange.of(keypoints[fold == f], SPECIALISTS[name], middle=0.25).bounds() for f in (1 - k, k)
            )
            assert report["reframe"]["weight"] == 0.75
            stored = report["reframe"]["bounds"]
            assert stored.keys() == own.keys()
            for key, bounds in stored.items():
                np.testing.assert_allclose(bounds, own[key], rtol=1e-6)
            assert any(not np.allclose(stored[key], other[key]) for key in ("eye_distance", "angle"))


def test_cv_writes_every_fold_artifact(smoke_run):
    work, _ = smoke_run
    for specialist in ("full", "partial"):
        for fold in (0, 1):
            folder = work / "runs" / "smoke" / specialist / f"fold{fold}"
            names = {p.name for p in folder.iterdir()}
            assert {
                "model.keras",
                "oof.csv",
                "oof_tta.csv",
                "test.csv",
                "test_tta.csv",
                "history.csv",
                "config.toml",
                "fold.json",
            } <= names
    assert (work / "folds").is_dir() and list((work / "folds").glob("*.csv"))
    assert not list((work / "runs").rglob("*.tmp"))


def test_submission_has_the_lookup_tables_rows_in_order(smoke_run, run_data):
    work, _ = smoke_run
    submission = pd.read_csv(work / "submissions" / "submission.csv")
    sample = pd.read_csv(run_data / "SampleSubmission.csv")
    lookup = pd.read_csv(run_data / "IdLookupTable.csv")
    assert list(submission.columns) == ["RowId", "Location"]
    assert len(submission) == len(sample) == len(lookup)
    assert (submission["RowId"] == sample["RowId"]).all()
    assert submission["Location"].between(0, 96).all()
    # Each location is in the right place: x coordinates of left-side keypoints sit on the image's right.
    left_x = lookup["FeatureName"].eq("left_eye_center_x").to_numpy()
    right_x = lookup["FeatureName"].eq("right_eye_center_x").to_numpy()
    assert submission["Location"][left_x].mean() > 48 > submission["Location"][right_x].mean()


def test_rerun_resumes_by_skipping_finished_folds(smoke_run, run_data):
    work, _ = smoke_run
    again = fkp(
        "cv",
        "--data",
        run_data,
        *SMOKE,
        "--run",
        "smoke",
        cwd=work,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already complete: skipped") == 4
    assert again.stdout.strip().splitlines()[-1] == smoke_run[1].strip().splitlines()[-1]


def test_a_run_cannot_take_folds_made_with_other_settings(smoke_run, run_data):
    work, _ = smoke_run
    other = fkp(
        "cv",
        "--data",
        run_data,
        "--folds",
        2,
        "--epochs",
        2,
        "--limit",
        200,
        "--config",
        "smoke",
        "--run",
        "smoke",
        cwd=work,
    )
    assert other.returncode == 2
    assert "run.json" in other.stderr and "config" in other.stderr


def test_blend_refuses_a_run_with_missing_folds_unless_asked(smoke_run, run_data):
    work, _ = smoke_run
    half = fkp(
        "cv",
        "--data",
        run_data,
        "--folds",
        2,
        "--fold",
        0,
        "--epochs",
        1,
        "--limit",
        200,
        "--config",
        "smoke",
        "--run",
        "half",
        cwd=work,
    )
    assert half.returncode == 0, half.stderr
    refused = fkp("blend", "--data", run_data, "--run", "half", "--out", "half.csv", cwd=work)
    assert refused.returncode == 2 and "folds [1] of 2 are missing" in refused.stderr
    assert not (work / "half.csv").exists()
    allowed = fkp("blend", "--data", run_data, "--run", "half", "--out", "half.csv", "--allow-partial", cwd=work)
    assert allowed.returncode == 0, allowed.stderr
    assert len(pd.read_csv(work / "half.csv")) == len(pd.read_csv(run_data / "IdLookupTable.csv"))


def test_blend_of_two_real_runs_writes_weights_and_faces_and_prints_each_score(smoke_run, run_data):
    work, _ = smoke_run
    shutil.copytree(work / "runs" / "smoke", work / "runs" / "twin")
    both = fkp("blend", "--data", run_data, "--runs", "smoke", "twin", "--out", "two/submission.csv", cwd=work)
    assert both.returncode == 0, both.stderr
    for row in ("run smoke", "run twin", "blend (nnls)"):
        assert row in both.stdout
    assert both.stdout.strip().splitlines()[-1].startswith("blend_rmse=")
    lookup = pd.read_csv(run_data / "IdLookupTable.csv")
    assert pd.read_csv(work / "two" / "submission.csv")["RowId"].tolist() == lookup["RowId"].tolist()
    weights = pd.read_csv(work / "two" / "submission_weights.csv")
    assert len(weights) == 30 and list(weights.columns) == ["coordinate", "smoke", "twin", "intercept"]
    assert (work / "two" / "submission_faces.png").stat().st_size > 10_000


def test_show_pictures_a_real_run(smoke_run, run_data):
    work, _ = smoke_run
    shown = fkp("show", "--data", run_data, "--run", "smoke", cwd=work)
    assert shown.returncode == 0, shown.stderr
    for name in ("validation_faces.png", "learning_curves.png", "rmse_per_keypoint.png"):
        assert (work / "runs" / "smoke" / "plots" / name).stat().st_size > 10_000
    assert "plots/validation_faces.png" in (work / "runs" / "smoke" / "report.md").read_text()


def test_a_single_network_run_answers_every_coordinate_and_blends_with_a_two_specialist_run(smoke_run, run_data):
    from competition.data import load_training
    from competition.evaluate import rmse
    from competition.run import Run

    work, _ = smoke_run
    cv = fkp(
        "cv",
        "--data",
        run_data,
        *SMOKE,
        "--set",
        "specialists.partial.enabled=false",
        "--run",
        "single",
        cwd=work,
    )
    assert cv.returncode == 0, cv.stdout + cv.stderr
    run = Run(work / "runs" / "single")
    assert sorted(p.name for p in run.path.iterdir() if p.is_dir()) == ["full"]
    assert "partial net" not in cv.stdout  # no column for a network the run did not train
    oof = run.oof("tta")["full"].drop(columns="fold")
    truth = load_training(run_data).keypoints[:200][oof.index]
    printed = float(cv.stdout.strip().splitlines()[-1].removeprefix("cv_rmse="))
    assert abs(printed - rmse(truth, oof.to_numpy())) < 1e-4
    both = fkp("blend", "--data", run_data, "--runs", "smoke", "single", "--out", "mixed.csv", cwd=work)
    assert both.returncode == 0, both.stderr
    assert len(pd.read_csv(work / "mixed.csv")) == len(pd.read_csv(run_data / "IdLookupTable.csv"))
    shown = fkp("show", "--data", run_data, "--run", "single", cwd=work)
    assert shown.returncode == 0, shown.stderr


def test_a_heatmap_run_trains_blends_with_a_regression_run_and_shows(smoke_run, run_data):
    """`model.family = "heatmap"` end to end: its folds train and predict pixels, the run blends with the
    regression run on the same folds, and `fkp show` pictures it."""
    import keras

    from competition.models.layers import SoftArgmax
    from competition.run import Run

    work, _ = smoke_run
    cv = fkp(
        "cv",
        "--data",
        run_data,
        "--folds",
        2,
        "--epochs",
        1,
        "--limit",
        200,
        "--config",
        "heatmap",
        "--run",
        "heatmap",
        cwd=work,
    )
    assert cv.returncode == 0, cv.stdout + cv.stderr
    assert np.isfinite(float(cv.stdout.strip().splitlines()[-1].removeprefix("cv_rmse=")))
    run = Run(work / "runs" / "heatmap")
    model = keras.saving.load_model(run.fold_dir("full", 0) / "model.keras", compile=False)
    assert isinstance(model.get_layer("keypoints"), SoftArgmax)
    oof = run.oof("tta")["full"].drop(columns="fold").to_numpy()
    assert oof.shape == (200, 30) and ((oof > 0) & (oof < 97)).all()
    both = fkp("blend", "--data", run_data, "--runs", "smoke", "heatmap", "--out", "families/submission.csv", cwd=work)
    assert both.returncode == 0, both.stderr
    assert "run heatmap" in both.stdout and both.stdout.strip().splitlines()[-1].startswith("blend_rmse=")
    weights = pd.read_csv(work / "families" / "submission_weights.csv")
    assert list(weights.columns) == ["coordinate", "smoke", "heatmap", "intercept"]
    shown = fkp("show", "--data", run_data, "--run", "heatmap", cwd=work)
    assert shown.returncode == 0, shown.stderr
    for name in ("validation_faces.png", "learning_curves.png", "rmse_per_keypoint.png"):
        assert (run.path / "plots" / name).stat().st_size > 10_000


def test_the_readmes_main_job_with_data_then_every_command_without_run(tmp_path, data_dir):
    """The README's main job with `--data` on a small data folder: `fkp cv --data DIR` (2 folds of 2 epochs) and
    `fkp blend --data DIR`; then `fkp show --data DIR`, `fkp export` and `fkp predict PHOTO` find the same run
    without `--run` (the run `fkp cv` writes on this machine), and export and predict need no data at all."""
    from conftest import small_competition_folder
    from PIL import Image
    from skimage import data as skimage_data

    small = small_competition_folder(data_dir, tmp_path / "small", 60, 10)
    work = tmp_path / "work"
    work.mkdir()
    cv = fkp("cv", "--data", small, "--folds", 2, "--epochs", 2, cwd=work)  # seconds, not the config's minutes
    assert cv.returncode == 0, cv.stdout + cv.stderr
    config = next(line for line in cv.stdout.splitlines() if line.startswith("config ")).split(":")[0].split()[1]
    assert (work / "runs" / config / "head.json").is_file()
    for args in (("blend", "--data", small), ("show", "--data", small), ("export",)):
        done = fkp(*args, cwd=work)
        assert done.returncode == 0, (args, done.stdout + done.stderr)
        assert f"run {config}: the run `fkp cv` writes on this machine" in done.stdout
    assert (work / "submissions" / "submission.csv").is_file() and (work / "runs" / config / "report.md").is_file()
    assert (work / "runs" / config / "export" / "model.keras").is_file()
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.jpg")
    predicted = fkp("predict", tmp_path / "astronaut.jpg", "--out", tmp_path / "out", cwd=work)
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert table["face"].tolist() == [1] and np.isfinite(table.filter(like="_x").to_numpy()).all()
