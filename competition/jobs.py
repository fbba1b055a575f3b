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


def member_seed(fold_seed: int, member: int) -> int:
    """The seed of a fold's ``member``-th network: the fold's own for the first, so one member trains as before."""
    if member == 0:
        return fold_seed
    return int(np.random.SeedSequence([fold_seed, member]).generate_state(1)[0] >> 1)


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
        return (f"{fold_label(self.specialist, self.fold)} best val_rmse {self.best_val_rmse:.4f} after "
                f"{self.epochs} epochs, {self.seconds:.0f}s, {self.faces_per_second:.0f} faces/s")
