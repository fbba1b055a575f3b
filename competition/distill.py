"""Distillation: a run whose folds learn a blend's answers where the labels are missing
(``distill.teachers``), so one network per fold carries what several runs answer together.

Fold k's teacher is made only of what never saw fold k's faces:

- each teacher run's fold-k models, answering the fold's training faces (with the run's TTA if it uses it);
- each run's inference head, fitted on the out-of-fold faces of the other folds;
- with several runs, blend weights (``head.BlendWeights``) fitted on the runs' answers on those faces, each
  answer from a head fitted without its own fold, as `fkp blend` scores a blend.

A training face keeps its labels; its missing coordinates (22 of a partial-style face's 30) take the
teacher's answers, weighed ``distill.filled_weight`` in the loss (``train.prepare_fold``). Validation faces
keep their labels alone, so the student's out-of-fold score is as honest as any run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import BlendConfig
from .data import TrainingSet
from .errors import InputError
from .evaluate import OutOfFold, out_of_fold, unfitted_head
from .folds import Folds
from .head import BlendWeights, cross_fit_predict
from .io import read_json
from .machine import stderr_silenced
from .run import Run, checked_run, variant
from .schema import COORDINATES, SPECIALISTS


@dataclass(frozen=True)
class Teacher:
    """A teacher run, with its out-of-fold input to its head read once for every fold's teacher."""

    run: Run
    tta: bool  # whether the run's answers are its TTA ones (its config's inference.tta)
    oof: OutOfFold


def teacher_runs(
    runs_dir: Path, names: list[str], training: TrainingSet, folds: Folds, limit: int | None
) -> list[Teacher]:
    """The teacher runs, refused in one line when one is missing, unfinished, or made on other data or folds."""
    if len(set(names)) < len(names):
        raise InputError("distill.teachers", f"a run is named twice: {' '.join(names)}")
    student = {"folds": folds.k, "fold_seed": folds.seed, "limit": limit}  # the data: checked_run
    teachers = []
    for run in (checked_run(runs_dir / name, training) for name in names):
        differs = [
            f"{key} {getattr(run.spec, key)} vs {value}"
            for key, value in student.items()
            if getattr(run.spec, key) != value
        ]
        if differs:
            raise InputError(run.spec_path, f"made on other folds than this run ({'; '.join(differs)})")
        for name in run.spec.specialists:
            run.usable_folds(name, allow_partial=False)
        tta = run.tta_used(None)
        teachers.append(Teacher(run, tta, out_of_fold(run, variant(tta), training)))
    if any(not np.array_equal(t.oof.rows, teachers[0].oof.rows) for t in teachers):
        raise InputError("distill.teachers", "the runs predict other out-of-fold faces: were all their folds finished?")
    return teachers


def _fold_predictions(run: Run, fold: int, images: np.ndarray, tta: bool) -> np.ndarray:
    """(S, N, 30) predictions of the run's fold-``fold`` models on ``images``, NaN outside each one's
    coordinates: the head's input, as the run's test predictions are made."""
    from .export import fold_reframe, load_fold_model
    from .tta import predict_with_tta

    stack = np.full((len(run.spec.specialists), len(images), len(COORDINATES)), np.nan)
    inference = run.spec.resolved.inference
    for s, name in enumerate(run.spec.specialists):
        specialist = SPECIALISTS[name]
        model = load_fold_model(run.models(name)[fold], len(specialist.coordinates))
        reframe = fold_reframe(run, name, fold, read_json(run.fold_dir(name, fold) / "fold.json"))
        plain, averaged = predict_with_tta(
            model, images, specialist, mirror_axis=run.spec.mirror_axis, shift=inference.tta_shift, reframe=reframe
        )
        stack[s][:, specialist.columns] = averaged if tta else plain
    return stack


def fold_teacher(
    teachers: list[Teacher], fold: int, training: TrainingSet, folds: Folds, blend: BlendConfig
) -> np.ndarray:
    """(N, 30): the teachers' blended answers on fold ``fold``'s training faces, NaN on its validation faces."""
    rows = folds.training_rows(fold)
    style = training.style[rows]
    answers, oof_answers = [], []
    for teacher in teachers:
        oof = teacher.oof
        kept = oof.fold != fold
        predictions, truth, face_style, face_fold = (
            oof.predictions[:, kept],
            oof.truth[kept],
            oof.style[kept],
            oof.fold[kept],
        )
        head = unfitted_head(teacher.run).fit(predictions, truth, face_style, face_fold)
        answers.append(head.predict(_fold_predictions(teacher.run, fold, training.images[rows], teacher.tta), style))
        if len(teachers) > 1:
            oof_answers.append(cross_fit_predict(unfitted_head(teacher.run), predictions, truth, face_style, face_fold))
    if len(teachers) == 1:
        blended = answers[0]
    else:
        weights = BlendWeights.from_config(blend).fit(np.stack(oof_answers), truth, face_style)
        blended = weights.predict(np.stack(answers), style)
    filled = np.full((len(training), len(COORDINATES)), np.nan)
    filled[rows] = blended
    return filled


def fold_teachers(
    teachers: list[Teacher], training: TrainingSet, folds: Folds, fold_ids: list[int]
) -> dict[int, np.ndarray]:
    """``fold_teacher`` of each fold in ``fold_ids``, with `fkp blend`'s default weights: in a process that may
    load Keras (``cv.in_fresh_process``)."""
    with stderr_silenced():  # the backend's C++ start-up lines, printed before any log level applies
        import keras  # noqa: F401
    return {fold: fold_teacher(teachers, fold, training, folds, BlendConfig()) for fold in fold_ids}
