"""Distillation (``distill.teachers``): each fold's teacher never saw the fold's faces, and the student is a
run like any other."""

import dataclasses
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import fkp

from competition import data
from competition.config import BlendConfig
from competition.distill import fold_teacher, teacher_runs
from competition.errors import InputError
from competition.folds import load_folds
from competition.run import Run
from competition.schema import COORDINATES


@pytest.fixture(scope="module")
def teachers(learned_run, run_data, tmp_path_factory):
    """Two teacher runs on the same folds (``learned_run`` and a copy) in a runs folder of their own, the
    training set and the folds they were made on."""
    runs = tmp_path_factory.mktemp("teachers") / "runs"
    for name in ("learned", "copy"):
        shutil.copytree(learned_run / "runs" / "learned", runs / name)
    training = data.load_training(run_data)
    folds = load_folds(next((learned_run / "folds").glob("*-k2.csv")), training)
    return runs, training, folds


@pytest.fixture(scope="module")
def fold0_teacher(teachers):
    """Fold 0's teacher: the blend of the two teacher runs."""
    runs_dir, training, folds = teachers
    return fold_teacher(teacher_runs(runs_dir, ["learned", "copy"], training, folds, None), 0, training, folds,
                        BlendConfig())  # fmt: skip


def test_a_folds_teacher_answers_its_training_faces_only_and_fills_every_coordinate(teachers, fold0_teacher):
    _, training, folds = teachers
    teacher = fold0_teacher
    assert teacher.shape == (len(training), len(COORDINATES))
    assert np.isnan(teacher[folds.validation_rows(0)]).all()
    answered = teacher[folds.training_rows(0)]
    assert np.isfinite(answered).all() and ((answered > 0) & (answered < 96)).all()
    partial = folds.training_rows(0)[training.style[folds.training_rows(0)] == "partial"]
    assert len(partial) > 10
    # a teacher that has learned faces: on the labelled coordinates, it answers within a few pixels
    labelled = ~np.isnan(training.keypoints[partial])
    assert np.sqrt(np.mean((teacher[partial][labelled] - training.keypoints[partial][labelled]) ** 2)) < 4.0


def test_no_part_of_a_folds_teacher_saw_the_folds_faces(teachers, fold0_teacher, tmp_path):
    """Fold 0's teacher is unchanged when fold 0's labels change, when the teachers' out-of-fold predictions of
    fold 0's faces change, and when the fold-1 models (trained on fold 0's faces) are gone: it is made of the
    fold-0 models and of heads and weights fitted on the other folds' faces alone."""
    runs_dir, training, folds = teachers
    before = fold0_teacher
    damaged = tmp_path / "runs"
    shutil.copytree(runs_dir, damaged)
    held = folds.validation_rows(0)
    rng = np.random.default_rng(0)
    keypoints = training.keypoints.copy()
    keypoints[held] += rng.normal(0, 5, keypoints[held].shape).astype(keypoints.dtype)
    relabelled = dataclasses.replace(training, keypoints=keypoints)
    for name in ("learned", "copy"):
        run = Run(damaged / name)
        for specialist in run.spec.specialists:
            for variant in ("plain", "tta"):
                path = run.predictions_path("oof", variant, specialist, 0)
                frame = pd.read_csv(path)
                frame.iloc[:, 1:] += rng.normal(0, 3, frame.iloc[:, 1:].shape)
                frame.to_csv(path, index=False)
            (run.fold_dir(specialist, 1) / "model.keras").write_bytes(b"not a model")
    after = fold_teacher(teacher_runs(damaged, ["learned", "copy"], relabelled, folds, None), 0, relabelled, folds,
                         BlendConfig())  # fmt: skip
    np.testing.assert_allclose(after, before, atol=1e-4)

    # and it does depend on what it is made of: the other fold's labels move it (one teacher is enough to show it)
    keypoints = training.keypoints.copy()
    keypoints[folds.training_rows(0)] += 3.0
    shifted = dataclasses.replace(training, keypoints=keypoints)
    alone = fold_teacher(teacher_runs(runs_dir, ["learned"], training, folds, None), 0, training, folds, BlendConfig())
    moved = fold_teacher(teacher_runs(runs_dir, ["learned"], shifted, folds, None), 0, shifted, folds, BlendConfig())
    assert np.nanmean(np.abs(moved - alone)) > 0.5


def test_teachers_on_other_folds_or_missing_are_refused_in_one_line(teachers):
    runs_dir, training, folds = teachers
    with pytest.raises(InputError, match="not a run folder"):
        teacher_runs(runs_dir, ["learned", "absent"], training, folds, None)
    with pytest.raises(InputError, match="made on other folds than this run.*limit None vs 300"):
        teacher_runs(runs_dir, ["learned"], training.head(300), folds.head(300), 300)
    with pytest.raises(InputError, match="named twice"):
        teacher_runs(runs_dir, ["learned", "learned"], training, folds, None)


@pytest.mark.slow
def test_a_distilled_run_is_a_run_like_any_other(teachers, learned_run, run_data):
    """`fkp cv` with teachers trains, scores and fits its head as any run; `fkp blend` takes it."""
    runs_dir = teachers[0]
    result = fkp(
        "cv", "--data", run_data, "--folds", 2, "--config", "cpu", "--epochs", 1, "--set", "inference.tta_shift=0",
        "--set", 'distill.teachers=["learned"]', "--set", "train.validate_every=1", "--run", "student",
        "--runs-dir", runs_dir, "--folds-dir", learned_run / "folds",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"teachers learned: their blend's answers for folds \[0, 1\] \(\d+s\)", result.output)
    assert float(result.output.strip().splitlines()[-1].removeprefix("cv_rmse=")) < 30
    student = Run(runs_dir / "student")
    assert student.spec.resolved.distill.teachers == ["learned"]
    assert student.head_path.exists() and student.finished_folds("full") == [0, 1]

    blended = fkp(
        "blend", "--data", run_data, "--runs", "learned", "student", "--runs-dir", runs_dir,
        "--out", runs_dir.parent / "student-blend.csv",
    )  # fmt: skip
    assert blended.exit_code == 0, blended.output
    assert "blend_rmse=" in blended.output

    resumed_without_teachers = fkp(
        "cv", "--data", run_data, "--folds", 2, "--config", "cpu", "--epochs", 1, "--set", "inference.tta_shift=0",
        "--set", "train.validate_every=1", "--run", "student",
        "--runs-dir", runs_dir, "--folds-dir", learned_run / "folds",
    )  # fmt: skip
    assert resumed_without_teachers.exit_code == 2
    assert "made with other config" in resumed_without_teachers.output
