"""Blending runs through `fkp blend` and ``blend_runs``: runs on disk, their stored heads, same folds only
(the blend weights themselves: tests/test_head.py)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fkp
from synthetic_runs import write_run

from competition import data
from competition.blend import blend_runs
from competition.config import PROJECT_CONFIGS, BlendConfig, Config, load_blend_config
from competition.errors import InputError
from competition.folds import make_folds
from competition.run import Run, RunSpec
from competition.schema import COORDINATES, MIRROR_AXIS, SPECIALISTS, specialist_for


def test_every_shipped_blend_config_loads():
    shipped = {path.stem: load_blend_config(str(path)) for path in (PROJECT_CONFIGS / "blend").glob("*.toml")}
    assert {"nnls", "ridge", "elasticnet"} <= set(shipped)
    assert all(config.method == name.removesuffix("-by-style") for name, config in shipped.items())
    assert all(config.by_style == name.endswith("-by-style") for name, config in shipped.items())
    assert load_blend_config("elasticnet").alpha == shipped["elasticnet"].alpha


@pytest.mark.parametrize(
    "text, message",
    [
        ('method = "average"\n', "key 'method' must be one of nnls, ridge, elasticnet"),
        ("alpha = -1\n", "key 'alpha' must be within 0..1000000.0"),
        ("l1_ratio = 2\n", "key 'l1_ratio' must be within 0..1"),
        ("alfa = 1\n", "unknown key 'alfa'"),
        ('positive = "yes"\n', "key 'positive' must be bool"),
    ],
)
def test_bad_blend_configs_are_refused(tmp_path, text, message):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_blend_config(str(path))


# --- runs on disk, blended through the CLI ------------------------------------------------------


@pytest.fixture(scope="module")
def sample(sample_dir):
    training = data.load_training(sample_dir)
    test = data.load_test(sample_dir)
    return training, test, make_folds(training, 3, seed=42)


@pytest.fixture(scope="module")
def test_styles(sample_dir, sample):
    """Each sample test face's annotation style, as `fkp blend` reads it from IdLookupTable."""
    _, test, _ = sample
    return data.lookup_styles(data.load_lookup(sample_dir, test))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample):
    """A good run (truth + 1 px noise), a worse one (3 px), and copies made on other folds."""
    training, test, folds = sample
    runs_dir = tmp_path_factory.mktemp("runs")
    write_run(runs_dir / "good", training, test, folds, noise=1.0, tta_noise=0.8, seed=1)
    write_run(runs_dir / "worse", training, test, folds, noise=3.0, tta_noise=2.5, seed=2)
    write_run(runs_dir / "reseeded", training, test, make_folds(training, 3, seed=7), noise=1.0, tta_noise=1.0, seed=3)
    write_run(
        runs_dir / "limited", training.head(200), test, folds.head(200), noise=1.0, tta_noise=1.0, seed=4, limit=200
    )
    return runs_dir


def test_two_runs_blend_into_a_submission_beside_its_weights_picture_and_report(runs, sample_dir, tmp_path):
    out = tmp_path / "subs" / "mine.csv"
    result = fkp("blend", "--runs", "good", "worse", "--runs-dir", runs, "--data", sample_dir, "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    run_rows = {name: next(line for line in lines if f"run {name}" in line) for name in ("good", "worse")}
    blend_row = next(line for line in lines if "blend (nnls)" in line)
    blend_rmse = float(result.stdout.strip().splitlines()[-1].removeprefix("blend_rmse="))
    good_used = float(run_rows["good"].split("│")[4])
    assert f"{blend_rmse:.4f}" in blend_row
    assert 0.5 < blend_rmse < good_used  # two independent error sources, weighed: better than the better one

    lookup = pd.read_csv(sample_dir / "IdLookupTable.csv")
    submission = pd.read_csv(out)
    assert list(submission.columns) == ["RowId", "Location"]
    assert submission["RowId"].tolist() == lookup["RowId"].tolist()
    assert submission["Location"].between(0, 96).all()

    weights = pd.read_csv(tmp_path / "subs" / "mine_weights.csv")
    assert list(weights.columns) == ["coordinate", "good", "worse", "intercept"]
    assert weights["coordinate"].tolist() == list(COORDINATES)
    assert (weights["good"] > weights["worse"]).all()  # 1 px noise against 2.5 px (TTA files)
    assert (weights["intercept"] == 0).all()

    # The submission is the weighted sum of the runs' fold-averaged flip-TTA test predictions.
    def fold_averaged(name):
        frames = {
            s: frame.drop(columns="fold").groupby(level=0).mean() for s, frame in Run(runs / name).test("tta").items()
        }
        return pd.DataFrame({c: frames[specialist_for(c)][c] for c in COORDINATES})

    w = weights.set_index("coordinate")
    expected = fold_averaged("good") * w["good"] + fold_averaged("worse") * w["worse"]
    asked = expected.stack().reindex(pd.MultiIndex.from_frame(lookup[["ImageId", "FeatureName"]])).to_numpy()
    np.testing.assert_allclose(submission["Location"], np.clip(asked, 0, 96), atol=1e-6)

    faces = tmp_path / "subs" / "mine_faces.png"
    assert faces.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "subs" / "mine_report.md").read_text()
    assert "](mine_faces.png)" in report and "](mine_weights.csv)" in report
    assert f"{blend_rmse:.4f}" in report


def test_one_run_is_its_plain_fold_average(runs, sample_dir, tmp_path, sample, test_styles):
    training, _, _ = sample
    blend = blend_runs([runs / "good"], training, BlendConfig(), test_styles=test_styles)
    assert blend.method == "fold average"
    assert (blend.weights["good"] == 1).all() and (blend.weights["intercept"] == 0).all()
    assert blend.blend_scores.equals(blend.scores.loc["good"])
    result = fkp("blend", "--run", "good", "--runs-dir", runs, "--data", sample_dir, "--out", tmp_path / "one.csv")
    assert result.exit_code == 0, result.output
    assert "blend (fold average)" in result.stdout


def test_tta_is_chosen_by_the_runs_config_or_the_flag(runs, sample, test_styles):
    training, _, _ = sample
    by_config = blend_runs([runs / "good", runs / "worse"], training, BlendConfig(), test_styles=test_styles)
    plain = blend_runs([runs / "good", runs / "worse"], training, BlendConfig(), tta=False, test_styles=test_styles)
    assert by_config.tta["good"] is True and plain.tta["good"] is False
    assert by_config.scores["used"].equals(by_config.scores["TTA"])
    assert plain.scores["used"].equals(plain.scores["no TTA"])
    assert by_config.blend_scores["used"] == by_config.blend_scores["TTA"]
    # the synthetic TTA files are the less noisy ones, and the scores say so
    assert (by_config.scores["TTA"] < by_config.scores["no TTA"]).all()
    # both are reported whichever is used
    assert plain.scores.loc["good", "TTA"] == by_config.scores.loc["good", "TTA"]


@pytest.mark.parametrize("other, differs", [("reseeded", "fold_seed 7 vs 42"), ("limited", "limit 200 vs None")])
def test_runs_on_other_folds_are_refused_with_one_line(runs, sample_dir, tmp_path, other, differs):
    out = tmp_path / "x.csv"
    result = fkp("blend", "--runs", "good", other, "--runs-dir", runs, "--data", sample_dir, "--out", out)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert f"{other}/run.json" in lines[0] and differs in lines[0] and "same folds" in lines[0]
    assert not out.exists()


def test_runs_must_follow_the_runs_option(runs, sample_dir):
    result = fkp("blend", "good", "--runs-dir", runs, "--data", sample_dir)
    assert result.exit_code == 2 and "name runs after --runs" in result.stderr


@pytest.mark.parametrize("command", ["blend", "show"])
def test_a_run_without_a_finished_fold_is_refused_with_one_line(tmp_path, sample, sample_dir, command):
    training, _, folds = sample
    Run(tmp_path / "empty").claim(
        RunSpec(training.fingerprint, folds.k, folds.seed, None, Config().to_dict(), MIRROR_AXIS)
    )
    result = fkp(command, "--run", "empty", "--runs-dir", tmp_path, "--data", sample_dir)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no finished fold" in result.stderr


def test_the_blend_reports_each_annotation_style(runs, sample, test_styles):
    """Style scores computed by hand from the runs' own predictions (pooled squared error per style)."""
    training, _, _ = sample
    blend = blend_runs([runs / "good"], training, BlendConfig(), test_styles=test_styles)
    oof = Run(runs / "good").oof("tta")
    rows = oof["full"].index.intersection(oof["partial"].index).to_numpy()
    predicted = oof["full"].loc[rows, list(COORDINATES)].to_numpy()
    partial_columns = [COORDINATES.index(c) for c in oof["partial"].columns if c != "fold"]
    predicted[:, partial_columns] = oof["partial"].loc[rows, [COORDINATES[c] for c in partial_columns]].to_numpy()
    truth = training.keypoints[rows]
    for style in ("full", "partial"):
        chosen = training.style[rows] == style
        errors = (predicted[chosen] - truth[chosen])[~np.isnan(truth[chosen])]
        assert np.isclose(blend.style_scores.loc["good", f"{style}-style"], np.sqrt(np.mean(errors**2)))
    assert blend.style_scores.loc["blend"].equals(blend.style_scores.loc["good"])  # one run: its fold average


def test_a_run_of_an_older_format_is_refused_with_one_line_saying_to_train_it_again(runs, tmp_path, sample_dir):
    """run.json without "format": a run written by fkp before format 2 (heads stored in the run), not read."""
    import json

    shutil.copytree(runs / "good", tmp_path / "runs" / "old")
    spec = json.loads((tmp_path / "runs" / "old" / "run.json").read_text())
    del spec["format"], spec["mirror_axis"]
    (tmp_path / "runs" / "old" / "run.json").write_text(json.dumps(spec))
    out = tmp_path / "s.csv"
    result = fkp("blend", "--run", "old", "--runs-dir", tmp_path / "runs", "--data", sample_dir, "--out", out)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "old/run.json" in lines[0] and "format" in lines[0] and "fkp cv" in lines[0]
    assert not out.exists()


# --- the submission is checked before it replaces the old one -----------------------------------


def _set_cell(path: Path, row: int, column: str, value) -> None:
    frame = pd.read_csv(path)
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


def _drop_row(path: Path, row: int) -> None:
    pd.read_csv(path).drop(index=row).to_csv(path, index=False)


def _everywhere(runs_dir: Path, name: str, column: str, value) -> None:
    """``value`` in ``column``'s first row of every fold's TTA test predictions."""
    for fold in range(3):
        _set_cell(Run(runs_dir / name).predictions_path("test", "tta", "partial", fold), 0, column, value)


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (
            lambda runs: _set_cell(runs / "good" / "partial" / "fold1" / "test_tta.csv", 4, "nose_tip_x", float("nan")),
            ["test_tta.csv, line 6, column nose_tip_x", "'nan' is not a finite number"],
        ),
        (
            lambda runs: _set_cell(runs / "good" / "full" / "fold2" / "test_tta.csv", 0, "mouth_left_corner_y", "inf"),
            ["fold2", "line 2, column mouth_left_corner_y", "inf"],
        ),
        (
            lambda runs: _set_cell(runs / "good" / "full" / "fold0" / "oof_tta.csv", 3, "left_eye_center_x", "-inf"),
            ["oof_tta.csv, line 5, column left_eye_center_x", "-inf"],
        ),
        (
            lambda runs: _drop_row(runs / "good" / "partial" / "fold0" / "test_tta.csv", 7),
            ["partial/fold0/test_tta.csv", "no prediction for test ImageId 8"],
        ),
        (
            lambda runs: [
                _drop_row(runs / "good" / name / f"fold{fold}" / "test_tta.csv", 7)
                for name in ("full", "partial")
                for fold in range(3)
            ],
            ["test predictions of run(s) good", "ImageId 8"],
        ),
        # every fold finite, their average not: only the last look before writing catches it
        (
            lambda runs: _everywhere(runs, "good", "nose_tip_x", 1e308),
            ["mine.csv", "not a finite number", "not written"],
        ),
    ],
    ids=["nan", "inf", "oof -inf", "face missing in a fold", "face missing in every fold", "overflow"],
)
def test_damaged_predictions_leave_the_old_submission_byte_for_byte(runs, sample_dir, tmp_path, damage, fragments):
    from test_bad_input import assert_one_line_error

    shutil.copytree(runs / "good", tmp_path / "runs" / "good")
    out = tmp_path / "subs" / "mine.csv"
    assert (
        fkp("blend", "--run", "good", "--runs-dir", tmp_path / "runs", "--data", sample_dir, "--out", out).exit_code
        == 0
    )
    before = {path.name: path.read_bytes() for path in out.parent.iterdir()}
    damage(tmp_path / "runs")
    result = fkp("blend", "--run", "good", "--runs-dir", tmp_path / "runs", "--data", sample_dir, "--out", out)
    assert_one_line_error(result, *fragments)
    assert {path.name: path.read_bytes() for path in out.parent.iterdir()} == before


def test_blend_clips_predictions_outside_the_image_and_says_how_many(runs, sample_dir, tmp_path):
    shutil.copytree(runs / "good", tmp_path / "runs" / "good")
    _everywhere(tmp_path / "runs", "good", "nose_tip_x", 120.0)  # ImageId 1: asked for nose_tip_x once
    _everywhere(tmp_path / "runs", "good", "nose_tip_y", -3.0)
    out = tmp_path / "mine.csv"
    result = fkp("blend", "--run", "good", "--runs-dir", tmp_path / "runs", "--data", sample_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 predicted Locations fell outside the image (0..96) and were clipped to its edge" in result.stdout
    lookup = pd.read_csv(sample_dir / "IdLookupTable.csv")
    located = pd.read_csv(out).assign(ImageId=lookup["ImageId"], FeatureName=lookup["FeatureName"])
    nose = located[located.ImageId == 1].set_index("FeatureName")["Location"]
    assert (nose["nose_tip_x"], nose["nose_tip_y"]) == (96.0, 0.0)


def test_a_blend_by_style_fits_even_one_run_and_a_test_face_takes_its_styles_weights(runs, sample_dir, tmp_path):
    out = tmp_path / "styled.csv"
    result = fkp(
        "blend",
        "--run",
        "good",
        "--runs-dir",
        runs,
        "--data",
        sample_dir,
        "--out",
        out,
        "--blend-config",
        "ridge-by-style",
    )
    assert result.exit_code == 0, result.output
    assert "blend (ridge, per annotation style)" in result.stdout
    weights = pd.read_csv(tmp_path / "styled_weights.csv").set_index(["style", "coordinate"])
    assert set(weights.index.get_level_values("style")) == {"full", "partial"}
    assert not np.allclose(weights.loc["full", "intercept"], weights.loc["partial", "intercept"])

    training = data.load_training(sample_dir)
    test_ids = data.load_test(sample_dir).image_ids
    styles = pd.Series(np.where(test_ids % 2, "partial", "full"), index=test_ids)  # the sample asks full only
    blend = blend_runs([runs / "good"], training, load_blend_config("ridge-by-style"), test_styles=styles)
    frames = {
        s: frame.drop(columns="fold").groupby(level=0).mean() for s, frame in Run(runs / "good").test("tta").items()
    }
    averaged = pd.DataFrame({c: frames[specialist_for(c)][c] for c in COORDINATES})
    for image_id in test_ids[:2]:
        w = blend.weights.loc[styles[image_id]]
        expected = averaged.loc[image_id] * w["good"] + w["intercept"]
        np.testing.assert_allclose(blend.keypoints.loc[image_id], expected[list(COORDINATES)], atol=1e-9)


def test_a_run_choosing_its_specialists_per_style_answers_test_faces_with_the_better_one(sample, tmp_path):
    """Both specialists trained; the partial network's out-of-fold errors are 3 times the full one's, so with
    inference.prefer_by_style the full network answers every coordinate of every test face, where the fixed
    smallest-first rule takes the partial network's 8; out of fold the choice scores better."""
    training, test, folds = sample
    config = Config()
    config.inference.prefer_by_style = True
    write_run(
        tmp_path / "styled",
        training,
        test,
        folds,
        noise=1.0,
        tta_noise=1.0,
        seed=5,
        config=config,
        noise_scale={"partial": 3.0},
    )
    write_run(tmp_path / "fixed", training, test, folds, noise=1.0, tta_noise=1.0, seed=5, noise_scale={"partial": 3.0})
    styles = pd.Series(np.where(test.image_ids % 2, "partial", "full"), index=test.image_ids)
    styled = blend_runs([tmp_path / "styled"], training, load_blend_config("nnls"), test_styles=styles)
    fixed = blend_runs([tmp_path / "fixed"], training, load_blend_config("nnls"), test_styles=styles)
    full_test = Run(tmp_path / "styled").test("tta")["full"].drop(columns="fold").groupby(level=0).mean()
    np.testing.assert_allclose(styled.keypoints.to_numpy(), full_test.loc[styled.keypoints.index].to_numpy())
    partial = list(SPECIALISTS["partial"].coordinates)
    assert not np.allclose(
        fixed.keypoints[partial].to_numpy(), full_test.loc[fixed.keypoints.index, partial].to_numpy()
    )
    assert styled.blend_scores["used"] < fixed.blend_scores["used"] - 0.3


def test_a_run_stores_the_head_its_test_faces_and_a_photos_face_take(sample, tmp_path):
    """`fkp export` and `fkp predict` answer a photo's face as the run's stored head answers a full-style face.
    A run choosing per style whose partial network is 3 times as noisy stores the full network for all 30
    coordinates of a full-style face; a run on the fixed order stores partial's 8; a run with one network and
    an offsets stage stores each coordinate's mean out-of-fold error, fitted on every out-of-fold face."""
    training, test, folds = sample
    config = Config()
    config.inference.prefer_by_style = True
    styled = write_run(
        tmp_path / "styled",
        training,
        test,
        folds,
        noise=1.0,
        tta_noise=1.0,
        seed=5,
        config=config,
        noise_scale={"partial": 3.0},
    )
    fixed = write_run(tmp_path / "fixed", training, test, folds, noise=1.0, tta_noise=1.0, seed=5)
    partial = set(SPECIALISTS["partial"].coordinates)
    for variant in ("plain", "tta"):
        assert Run(styled.path).head(variant).choice.sources("full") == ["full"] * 30
        assert Run(fixed.path).head(variant).choice.sources("full") == [
            "partial" if c in partial else "full" for c in COORDINATES
        ]
        assert Run(fixed.path).head(variant).second_stage is None
    config = Config()
    config.specialists["partial"].enabled = False
    config.inference.refine = "offsets"
    refined = write_run(
        tmp_path / "refined", training, test, folds, noise=1.0, tta_noise=1.0, seed=5, config=config, bias=0.7
    )
    stage = Run(refined.path).head("plain").second_stage
    oof = refined.oof("plain")["full"].sort_index()
    np.testing.assert_allclose(
        stage.intercept_, np.nanmean(training.keypoints[oof.index] - oof[list(COORDINATES)].to_numpy(), axis=0)
    )


def test_a_run_without_its_head_is_refused_with_one_line(runs, sample_dir, tmp_path):
    shutil.copytree(runs / "good", tmp_path / "runs" / "good")
    (tmp_path / "runs" / "good" / "head.json").unlink()
    result = fkp(
        "blend", "--run", "good", "--runs-dir", tmp_path / "runs", "--data", sample_dir, "--out", tmp_path / "s.csv"
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "head.json" in lines[0] and "fkp cv" in lines[0]


def test_a_head_fitted_before_a_folds_change_is_refused_with_one_line(runs, sample_dir, tmp_path):
    """A fold deleted after `fkp cv` fitted the head: the head saw faces the run no longer has, so even with
    --allow-partial the run is refused until `fkp cv` fits it again."""
    shutil.copytree(runs / "good", tmp_path / "runs" / "good")
    shutil.rmtree(tmp_path / "runs" / "good" / "full" / "fold1")
    result = fkp(
        "blend",
        "--run",
        "good",
        "--runs-dir",
        tmp_path / "runs",
        "--data",
        sample_dir,
        "--out",
        tmp_path / "s.csv",
        "--allow-partial",
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "head.json: fitted on the folds" in lines[0] and "fkp cv" in lines[0]
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("refine", ["offsets", "linear"])
def test_a_refined_run_scores_and_predicts_its_test_faces_through_its_second_stage(sample, tmp_path, refine):
    """One network whose out-of-fold predictions are all 0.7 px too high (and noisy): refined, each fold's faces
    corrected by the fit on the other folds score about the noise alone, where the same run unrefined does not;
    its test answers are its fold average through the stored second stage, fitted on every out-of-fold face."""
    training, test, folds = sample
    config = Config()
    config.specialists["partial"].enabled = False
    config.inference.refine = refine
    refined = write_run(
        tmp_path / "refined", training, test, folds, noise=0.3, tta_noise=0.3, seed=5, config=config, bias=0.7
    )
    config.inference.refine = "none"
    write_run(tmp_path / "still", training, test, folds, noise=0.3, tta_noise=0.3, seed=5, config=config, bias=0.7)
    styles = pd.Series("full", index=test.image_ids)
    blend = blend_runs([tmp_path / "refined"], training, load_blend_config("nnls"), test_styles=styles)
    still = blend_runs([tmp_path / "still"], training, load_blend_config("nnls"), test_styles=styles)
    assert blend.scores.loc["refined", "TTA"] < 0.4 < 0.7 < still.scores.loc["still", "TTA"]
    stage = Run(refined.path).head("tta").second_stage
    assert stage.kind == refine and np.allclose(stage.intercept_.mean(), -0.7, atol=0.2)
    averaged = refined.test("tta")["full"].drop(columns="fold").groupby(level=0).mean()
    np.testing.assert_allclose(
        blend.keypoints.to_numpy(), stage.predict(averaged.loc[blend.keypoints.index].to_numpy()[None]), atol=1e-6
    )
