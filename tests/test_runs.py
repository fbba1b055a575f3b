"""`fkp runs`: every run in one table, best cv_rmse first, scored as `fkp cv` scores it; unfinished runs
marked; a folder that cannot be read is one row saying why."""

from __future__ import annotations

import shutil

import pytest
from synthetic_runs import write_run
from typer.testing import CliRunner

from competition import data
from competition.cli import app
from competition.data import TrainingSet
from competition.evaluate import ALL_FACES, STYLE_COLUMNS, out_of_fold_by_variant, run_scores
from competition.folds import make_folds
from competition.run import Run
from competition.runs import run_rows


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, sample_dir):
    """Synthetic runs of the sample (OOF = truth + noise of a chosen size), one unfinished, one made on
    other data, and folders that cannot be read."""
    training, test = data.load_training(sample_dir), data.load_test(sample_dir)
    folds = make_folds(training, 2, seed=42)
    folder = tmp_path_factory.mktemp("runs")
    for name, noise in (("worse", 3.0), ("good", 1.0), ("unfinished", 0.5)):
        write_run(folder / name, training, test, folds, noise=noise + 1, tta_noise=noise, seed=1, fold_seconds=30.0)
    shutil.rmtree(Run(folder / "unfinished").fold_dir("partial", 1))
    elsewhere = TrainingSet(training.images, training.keypoints, "0" * 16)
    write_run(folder / "elsewhere", elsewhere, test, make_folds(elsewhere, 2, seed=42), noise=1, tta_noise=1, seed=2)
    (folder / "bad-json").mkdir()
    (folder / "bad-json" / "run.json").write_text("{")
    damaged = write_run(folder / "bad-csv", training, test, folds, noise=1, tta_noise=1, seed=3)
    damaged.predictions_path("oof", "tta", "full", 0).write_text("row,left_eye_center_x\n0,oops\n")
    (folder / "tune" / "t" / "full").mkdir(parents=True)  # `fkp tune`'s projects are not runs
    return folder


def test_runs_are_listed_best_first_with_the_scores_fkp_cv_prints(runs_dir, training):
    rows = run_rows(runs_dir, training)
    assert [row.name for row in rows] == ["unfinished", "good", "worse", "elsewhere", "bad-csv", "bad-json"]
    for row in rows[1:3]:
        run = Run(runs_dir / row.name)
        _, overall, _ = run_scores(run, out_of_fold_by_variant(run, training))
        assert row.scores == {column: overall["tta"][column] for column in (ALL_FACES, *STYLE_COLUMNS.values())}
        assert row.finished and row.folds == "full 2/2, partial 2/2" and row.seconds == 4 * 30.0
        assert row.config == "default" and row.fingerprint == training.fingerprint[:8]
    assert rows[1].cv < rows[2].cv


def test_an_unfinished_run_is_marked_and_scored_on_its_finished_folds(runs_dir, training):
    row = next(row for row in run_rows(runs_dir, training) if row.name == "unfinished")
    assert not row.finished and row.folds == "full 2/2, partial 1/2" and row.seconds == 3 * 30.0
    assert row.note.startswith("unfinished") and row.cv is not None


def test_a_run_made_on_other_data_is_listed_unscored_saying_why(runs_dir, training):
    row = next(row for row in run_rows(runs_dir, training) if row.name == "elsewhere")
    assert row.finished and row.scores == {} and row.seconds is None
    assert f"trained on other data (fingerprint {'0' * 16}) than --data holds ({training.fingerprint})" in row.note


def test_a_folder_that_cannot_be_read_is_one_row_saying_why(runs_dir, training):
    rows = {row.name: row for row in run_rows(runs_dir, training)}
    assert rows["bad-json"].note.startswith(f"cannot be read: {runs_dir / 'bad-json' / 'run.json'}: not valid JSON")
    assert rows["bad-csv"].note.startswith("cannot be read: ") and "oof_tta.csv" in rows["bad-csv"].note
    assert rows["bad-json"].scores == {} == rows["bad-csv"].scores


def test_fkp_runs_prints_one_table_of_every_run(runs_dir, sample_dir):
    result = CliRunner().invoke(
        app, ["runs", "--runs-dir", str(runs_dir), "--data", str(sample_dir)], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(f"│ {name} "))
        for name in ("unfinished", "good", "worse", "elsewhere", "bad-csv", "bad-json")
    ]
    assert order == sorted(order)
    unfinished = lines[order[0]]
    assert "partial 1/2*" in unfinished and unfinished.split("│")[5].strip().endswith("*")
    assert "1 min 30 s" in unfinished and "2 min 00 s" in lines[order[1]]
    assert "cannot be read" in lines[order[-1]] and "tune" not in result.stdout.split("┃ run")[1]


def test_fkp_runs_refuses_a_missing_runs_folder(tmp_path, sample_dir):
    result = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path / "nowhere"), "--data", str(sample_dir)])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"fkp: {tmp_path / 'nowhere'}: no such runs folder: run `fkp cv` first or pass --runs-dir"
    )
