"""A run folder's layout, and what a finished fold reports: shared by the trainer and the run's
orchestrator without importing Keras, so `fkp cv`'s own process never loads a backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PREDICTIONS = {"oof": "oof.csv", "oof_tta": "oof_tta.csv", "test": "test.csv", "test_tta": "test_tta.csv"}


@dataclass(frozen=True)
class FoldResult:
    specialist: str
    fold: int
    best_val_rmse: float
    epochs: int
    seconds: float
    faces_per_second: float


def fold_dir(run_dir: Path, specialist: str, fold: int) -> Path:
    """runs/<run>/<specialist>/fold<k>/: a fold's model, predictions and history."""
    return run_dir / specialist / f"fold{fold}"
