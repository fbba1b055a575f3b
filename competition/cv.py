"""`fkp cv`: train the config's specialists on every fold (or one), then score out-of-fold like Kaggle."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import Config
from .data import TestSet, TrainingSet
from .errors import InputError
from .evaluate import cv_table, leaderboard_mix, read_oof
from .folds import Folds
from .io import claim_record, write_toml
from .schema import SPECIALISTS
from .artifacts import FoldResult, fold_dir


@dataclass(frozen=True)
class RunSpec:
    """What makes a run's folds comparable: same data, same folds, same config, same subset."""

    fingerprint: str
    folds: int
    fold_seed: int
    limit: int | None
    config: dict

    @classmethod
    def read(cls, run_dir: Path) -> RunSpec:
        path = run_dir / "run.json"
        if not path.exists():
            raise InputError(run_dir, "not a run folder (no run.json): run `fkp cv` first")
        return cls(**json.loads(path.read_text()))

    @property
    def specialists(self) -> list[str]:
        """The specialists the run trains; a run recorded before the config had the key trained all."""
        return self.config.get("specialists", list(SPECIALISTS))

    def claim(self, run_dir: Path) -> None:
        """Record this spec for a new run; refuse to add folds to a run made with another one."""
        if claim_record(run_dir / "run.json", self.__dict__, "pick another --run or delete the run"):
            write_toml(self.config, run_dir / "config.toml")

def _train_fold(*args) -> FoldResult:
    from .train import train_fold  # Keras loads in the fold's own process only

    return train_fold(*args)


def train_in_fresh_process(*args) -> FoldResult:
    """``train.train_fold(*args)`` in a spawned process of its own. The backend keeps memory for every
    model a process has built (TensorFlow about 100 MB each), so a run of ten would grow by a GiB;
    and this process, which holds the data, never loads Keras (about 570 MB)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_train_fold, *args).result()


def run_cv(
    config: Config,
    training: TrainingSet,
    test: TestSet,
    folds: Folds,
    run_dir: Path,
    *,
    only_fold: int | None = None,
    limit: int | None = None,
    log=print,
) -> list[FoldResult]:
    if only_fold is not None and not 0 <= only_fold < folds.k:
        raise InputError("--fold", f"fold {only_fold} does not exist: folds are 0..{folds.k - 1}")
    RunSpec(training.fingerprint, folds.k, folds.seed, limit, config.to_dict()).claim(run_dir)
    results = []
    for name in config.specialists:
        for fold in range(folds.k) if only_fold is None else [only_fold]:
            if fold_dir(run_dir, name, fold).exists():
                log(f"[{name} fold {fold}] already complete: skipped")
                continue
            result = train_in_fresh_process(name, fold, config, training, test, folds, run_dir)
            log(
                f"[{name} fold {fold}] best val_rmse {result.best_val_rmse:.4f} after {result.epochs} epochs, "
                f"{result.seconds:.0f}s, {result.faces_per_second:.0f} faces/s"
            )
            results.append(result)
    return results


def score(run_dir: Path, training: TrainingSet, tta: bool) -> tuple[pd.DataFrame, int]:
    """The per-keypoint CV table of a run, and how many faces it covers."""
    frames = read_oof(run_dir, tta, RunSpec.read(run_dir).specialists)
    mixed = leaderboard_mix(frames)
    full = frames["full"].loc[mixed.index, list(SPECIALISTS["full"].coordinates)]
    return cv_table(training.keypoints[mixed.index], full.to_numpy(), mixed.to_numpy()), len(mixed)

