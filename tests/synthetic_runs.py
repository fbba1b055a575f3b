"""Run folders laid out as `fkp cv` writes them, with predictions of a chosen quality.

Blending and pictures read only these files, so a run whose out-of-fold predictions are the
truth plus Gaussian noise of a known size tests them in milliseconds, against known answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import Config
from competition.cv import RunSpec
from competition.data import TestSet, TrainingSet
from competition.folds import Folds
from competition.schema import SPECIALISTS


def write_run(
    run_dir: Path, training: TrainingSet, test: TestSet, folds: Folds, *, noise: float, tta_noise: float,
    seed: int, limit: int | None = None, tta: bool = True,
) -> None:
    """OOF predictions = truth (the mean face where unlabelled) + N(0, noise) (``tta_noise`` for the TTA files);
    test predictions = the mean face + N(0, 1); a made-up three-epoch history."""
    config = Config()
    config.full.train.tta = config.partial.train.tta = tta
    RunSpec(training.fingerprint, folds.k, folds.seed, limit, config.to_dict()).claim(run_dir)
    rng = np.random.default_rng(seed)
    mean_face = np.nanmean(training.keypoints, axis=0)
    for name, specialist in SPECIALISTS.items():
        columns = list(specialist.coordinates)
        for fold in range(folds.k):
            folder = run_dir / name / f"fold{fold}"
            folder.mkdir(parents=True)
            rows = folds.validation_rows(fold)
            truth = training.keypoints[np.ix_(rows, specialist.columns)]
            centre = np.where(np.isnan(truth), mean_face[specialist.columns], truth)
            for filename, sigma in (("oof.csv", noise), ("oof_tta.csv", tta_noise)):
                predicted = pd.DataFrame(centre + rng.normal(0, sigma, centre.shape), columns=columns)
                predicted.insert(0, "row", rows)
                predicted.to_csv(folder / filename, index=False)
            for filename in ("test.csv", "test_tta.csv"):
                shape = (len(test), len(columns))
                predicted = pd.DataFrame(mean_face[specialist.columns] + rng.normal(0, 1, shape), columns=columns)
                predicted.insert(0, "ImageId", test.image_ids)
                predicted.to_csv(folder / filename, index=False)
            history = pd.DataFrame({"loss": [60.0, 20.0, 12.0], "rmse": [8.0, 4.5, 3.5],
                                    "val_loss": [40.0, 18.0, 14.0], "val_rmse": [6.5, 4.2, 3.8]})
            history.rename_axis("epoch").to_csv(folder / "history.csv")
