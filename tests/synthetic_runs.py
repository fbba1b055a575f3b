"""Runs written through ``Run.write_fold``, as `fkp cv` writes them, with predictions of a chosen quality.

Blending and pictures read only what a run holds, so a run whose out-of-fold predictions are the
truth plus Gaussian noise of a known size tests them in seconds, against known answers.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import Config
from competition.data import TestSet, TrainingSet
from competition.evaluate import fit_run_head, out_of_fold_by_variant
from competition.folds import Folds
from competition.run import FoldArtifacts, Run, RunSpec
from competition.schema import MIRROR_AXIS, SPECIALISTS


@functools.cache
def tiny_model(outputs: int = 2, name: str = "specialist"):
    """A real (untrained) model of ``outputs`` coordinates to save in each fold, as `fkp cv` does: small enough
    that `fkp export` and `fkp predict` build and run the whole run in a second."""
    from competition.models import build_model
    from competition.models.regression import Config as RegressionConfig

    return build_model(
        RegressionConfig(filters=[2], convs_per_block=1, dense_units=2, input_downsample=4),
        np.zeros(outputs),
        np.ones(outputs),
        1e-3,
        name=name,
    )


def write_run(
    run_dir: Path,
    training: TrainingSet,
    test: TestSet,
    folds: Folds,
    *,
    noise: float,
    tta_noise: float,
    seed: int,
    limit: int | None = None,
    tta: bool = True,
    config: Config | None = None,
    fold_seconds: float | None = None,
    noise_scale: dict[str, float] | None = None,
    bias: float = 0.0,
    model: object | None = None,
) -> Run:
    """OOF predictions = truth (the mean face where unlabelled) + N(0, noise) (``tta_noise`` for the flip-TTA
    variant); test predictions = the mean face + N(0, 1); a made-up three-epoch history; each fold's
    report gives ``fold_seconds`` of training, if any; ``noise_scale`` multiplies a specialist's OOF noise;
    ``bias`` px are added to every OOF prediction; ``model``: what each fold saves as its model (default
    ``tiny_model()``; bytes are written as they are, for tests that never load a model and skip Keras)."""
    config = config or Config()
    config.inference.tta = tta
    run = Run(run_dir)
    run.claim(RunSpec(training.fingerprint, folds.k, folds.seed, limit, config.to_dict(), MIRROR_AXIS))
    rng = np.random.default_rng(seed)
    mean_face = np.nanmean(training.keypoints, axis=0)
    history = pd.DataFrame(
        {
            "loss": [60.0, 20.0, 12.0],
            "rmse": [8.0, 4.5, 3.5],
            "val_loss": [40.0, 18.0, 14.0],
            "val_rmse": [6.5, 4.2, 3.8],
        }
    )
    for name in config.trained:
        specialist = SPECIALISTS[name]
        columns = list(specialist.coordinates)
        for fold in range(folds.k):
            rows = folds.validation_rows(fold)
            truth = training.keypoints[np.ix_(rows, specialist.columns)]
            centre = np.where(np.isnan(truth), mean_face[specialist.columns], truth)
            predictions = {}
            scale = (noise_scale or {}).get(name, 1.0)
            for variant, sigma in (("plain", noise), ("tta", tta_noise)):
                predicted = pd.DataFrame(centre + bias + rng.normal(0, sigma * scale, centre.shape), columns=columns)
                predicted.insert(0, "row", rows)
                predictions["oof", variant] = predicted
            for variant in ("plain", "tta"):
                shape = (len(test), len(columns))
                predicted = pd.DataFrame(mean_face[specialist.columns] + rng.normal(0, 1, shape), columns=columns)
                predicted.insert(0, "ImageId", test.image_ids)
                predictions["test", variant] = predicted
            run.write_fold(
                name,
                fold,
                FoldArtifacts(
                    tiny_model(len(columns), f"{name}_fold{fold}") if model is None else model,
                    predictions,
                    history,
                    config.to_dict(),
                    {"specialist": name, "fold": fold, **({"seconds": fold_seconds} if fold_seconds else {})},
                ),
            )
    fit_run_head(run, out_of_fold_by_variant(run, training))  # as `fkp cv` does once its folds are trained
    return run
