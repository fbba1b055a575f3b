"""`fkp runs`: every run of a runs folder in one table, best cv_rmse first, so dozens of runs can be compared.

Each run is scored like `fkp cv` scores it (the leaderboard mix of its out-of-fold predictions, over
all faces and per annotation style) against the labels of ``--data``. A folder that cannot be read
is a row saying why; the other runs are still listed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from .data import TrainingSet
from .errors import InputError
from .evaluate import ALL_FACES, STYLE_COLUMNS, oof_answers, style_scores
from .run import Run, tta_words, variant
from .schema import COORDINATES

SCORE_COLUMNS = [ALL_FACES, *STYLE_COLUMNS.values()]
TUNE_FOLDER = "tune"  # `fkp tune`'s projects, beside the runs
# What a damaged run folder raises while it is read: its files' own errors are InputErrors; a value of
# the wrong kind inside an otherwise readable file (a row past the data's end, a report's seconds
# that are not a number) surfaces as one of the others.
_UNREADABLE = (InputError, OSError, ValueError, LookupError, TypeError)


@dataclass(frozen=True)
class RunRow:
    """One line of `fkp runs`: a run, or a folder that is not a readable one (``note`` says why)."""

    name: str
    config: str = ""
    fingerprint: str = ""
    folds: str = ""  # folds finished of K, per trained specialist
    finished: bool = False
    scores: dict[str, float] = field(default_factory=dict)  # SCORE_COLUMNS -> RMSE; empty when not scored
    seconds: float | None = None  # the folds' training time, summed
    updated: str = ""  # when its newest fold (or run.json) was written
    note: str = ""

    @property
    def cv(self) -> float | None:
        return self.scores.get(ALL_FACES)


def _updated(paths: list[Path]) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(max(path.stat().st_mtime for path in paths)))


def run_row(run: Run, training: TrainingSet, tta: bool | None = None) -> RunRow:
    """A run's row: its spec, progress and training time, scored on ``training`` when it was trained on it."""
    spec = run.spec
    finished = {name: run.finished_folds(name) for name in spec.specialists}
    done = all(len(folds) == spec.folds for folds in finished.values())
    reports = [report for name in spec.specialists for report in run.fold_reports(name).values()]
    seconds = [report.get("seconds") for report in reports]
    row = dict(
        name=run.name,
        config=spec.resolved.name,
        fingerprint=spec.fingerprint[:8],
        folds=", ".join(f"{name} {len(folds)}/{spec.folds}" for name, folds in finished.items()),
        finished=done,
        seconds=float(sum(seconds)) if seconds and all(isinstance(s, (int, float)) for s in seconds) else None,
        updated=_updated(
            [run.spec_path, *(run.fold_dir(name, fold) for name, folds in finished.items() for fold in folds)]
        ),
    )
    notes = [] if done else ["unfinished"]
    used = run.tta_used(tta)
    if spec.fingerprint != training.fingerprint:
        notes.append(
            f"trained on other data (fingerprint {spec.fingerprint}) than --data holds "
            f"({training.fingerprint}): not scored"
        )
    elif not all(finished.values()):
        notes.append("not scored: a specialist has no finished fold")
    else:
        labelled = training.head(spec.limit)
        mixed = oof_answers(run, variant(used), labelled)
        rows = mixed.index.to_numpy()
        scores = style_scores(labelled.keypoints[rows], mixed[list(COORDINATES)].to_numpy(), labelled.style[rows])
        row["scores"] = {column: float(scores[column]) for column in SCORE_COLUMNS}
        notes.append(f"{tta_words(used)}, {len(rows)} faces")
    return RunRow(**row, note="; ".join(notes))


def run_rows(runs_dir: Path, training: TrainingSet, tta: bool | None = None) -> list[RunRow]:
    """Every folder of ``runs_dir`` (but `fkp tune`'s) as a row: scored runs best first, then unscored
    runs, then folders that cannot be read; by name within each."""
    if not runs_dir.is_dir():
        raise InputError(runs_dir, "no such runs folder: run `fkp cv` first or pass --runs-dir")
    rows = []
    for path in sorted(path for path in runs_dir.iterdir() if path.is_dir() and path.name != TUNE_FOLDER):
        try:
            rows.append(run_row(Run(path), training, tta))
        except _UNREADABLE as error:
            rows.append(RunRow(path.name, note=f"cannot be read: {error}"))
    return sorted(rows, key=lambda row: (row.cv is None, not row.config, row.cv or 0.0, row.name))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def runs_table(rows: list[RunRow], title: str) -> Table:
    """The rows as a rich table; an unfinished run's folds and figures are marked with a *."""
    table = Table(title=title)
    for column in (
        "run",
        "config",
        "data",
        "folds",
        *(f"cv {c}" if c == ALL_FACES else c for c in SCORE_COLUMNS),
        "train time",
        "updated",
        "note",
    ):
        table.add_column(
            column, justify="right" if column in (f"cv {ALL_FACES}", *STYLE_COLUMNS.values(), "train time") else "left"
        )
    for row in rows:
        mark = "" if row.finished else "*"
        figures = [
            f"{row.scores[c]:.4f}{mark}" if c in row.scores and np.isfinite(row.scores[c]) else "—"
            for c in SCORE_COLUMNS
        ]
        table.add_row(
            row.name,
            row.config,
            row.fingerprint,
            row.folds + (mark if row.folds else ""),
            *figures,
            _duration(row.seconds) if row.config else "",
            row.updated,
            row.note,
        )
    return table
