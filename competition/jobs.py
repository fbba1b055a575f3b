"""A fold job (one specialist on one fold of a run) and what it reports: what crosses between the
process that holds the data and the fold process (Keras-free)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .data import TestSet, TrainingSet
from .folds import Folds


@dataclass(frozen=True)
class FoldJob:
    run_dir: Path
    specialist: str
    fold: int
    config: Config
    training: TrainingSet
    test: TestSet
    folds: Folds
    minutes: float = 0.0  # this job's training minutes from the run's budget (0: none; cv.Budget)
    # (N, 30) answers of the fold's teacher on its training faces, NaN elsewhere (`distill.teachers`); None: labels only
    teacher: np.ndarray | None = None

    @property
    def label(self) -> str:
        """How its progress lines start: ``[full fold 0]``."""
        return fold_label(self.specialist, self.fold)

    @property
    def seed(self) -> int:
        """The seed of the fold's weights, shuffling and augmentation."""
        return fold_seed(self.config, self.fold)


def fold_label(specialist: str, fold: int) -> str:
    return f"[{specialist} fold {fold}]"


def fold_seed(config: Config, fold: int) -> int:
    return config.seed * 1000 + fold


@dataclass(frozen=True)
class FoldResult:
    specialist: str
    fold: int
    best_val_rmse: float
    epochs: int
    seconds: float
    faces_per_second: float

    @property
    def summary(self) -> str:
        """The line a finished fold job prints."""
        return (
            f"{fold_label(self.specialist, self.fold)} best val_rmse {self.best_val_rmse:.4f} after "
            f"{self.epochs} epochs, {self.seconds:.0f}s, {self.faces_per_second:.0f} faces/s"
        )


class FoldsFailed(Exception):
    """Fold jobs that failed for good (each already named in its line); the others are in the run."""
