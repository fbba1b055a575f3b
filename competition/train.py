"""Train one specialist on one fold, in stages: ``prepare_fold -> build_fold_model -> train_stage ->
predict_fold -> write_fold``. `fkp cv` runs them in a fold's own process (``train_fold``) or on a Ray
worker (``fit_fold``, whose artifacts go back to the driver); `fkp tune` builds its trials from the same
pieces, so a trial trains exactly like a fold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from .augment import Augmenter, FramingRange
from .config import SpecialistConfig, TrainConfig
from .data import TestSet, TrainingSet
from .dataset import FaceBatches
from .errors import InputError
from .folds import Folds
from .jobs import FoldJob, FoldResult
from .models import build_model, target_statistics
from .predict import PREDICT_BATCH, predict_with_flip
from .runs import FoldArtifacts, Run
from .schema import SPECIALISTS, Specialist


def labelled_rows(keypoints: np.ndarray, rows: np.ndarray, specialist: Specialist) -> np.ndarray:
    """The rows among ``rows`` with any of the specialist's coordinates labelled."""
    return rows[~np.isnan(keypoints[np.ix_(rows, specialist.columns)]).all(axis=1)]


class _EpochLog(keras.callbacks.Callback):
    """One line per epoch, prefixed with what is training."""

    def __init__(self, prefix: str, epochs: int):
        super().__init__()
        self.prefix, self.epochs = prefix, epochs
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        print(
            f"{self.prefix} epoch {epoch + 1}/{self.epochs}  rmse {logs.get('rmse', float('nan')):.3f}  "
            f"val_rmse {logs.get('val_rmse', float('nan')):.3f}  lr {lr:.2g}  "
            f"{time.perf_counter() - self.started:.0f}s",
            flush=True,
        )


class _TimeBudget(keras.callbacks.Callback):
    """Stops training after the epoch that exhausts a wall-clock budget (EarlyStopping keeps the best weights)."""

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = minutes * 60

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.started >= self.seconds:
            self.model.stop_training = True


@dataclass(frozen=True)
class PreparedFold:
    """One specialist's faces on one fold: the rows it trains and validates on, their batches, its seed."""

    specialist: Specialist
    fold: int
    seed: int
    train_rows: np.ndarray
    val_rows: np.ndarray
    train_batches: FaceBatches  # augmented and shuffled
    val_batches: FaceBatches  # plain

    @property
    def name(self) -> str:
        return f"{self.specialist.name}_fold{self.fold}"


def prepare_fold(
    name: str, fold: int, settings: SpecialistConfig, training: TrainingSet, folds: Folds, seed: int,
) -> PreparedFold:
    """The fold's training and validation rows that hold any of the specialist's keypoints, batched."""
    specialist = SPECIALISTS[name]
    train_rows = labelled_rows(training.keypoints, folds.training_rows(fold), specialist)
    val_rows = labelled_rows(training.keypoints, folds.validation_rows(fold), specialist)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise InputError(
            "--limit", f"fold {fold} has {len(train_rows)} training and {len(val_rows)} validation faces "
            f"labelled for the {name} specialist: use more faces or fewer folds"
        )
    columns = specialist.columns
    train_batches = FaceBatches(
        training.images[train_rows], training.keypoints[np.ix_(train_rows, columns)], settings.train.batch_size,
        augmenter=Augmenter(settings.augment, specialist.flip_permutation,
                            FramingRange.of(training.keypoints[train_rows], specialist), folds.flip_axis),
        shuffle=True, seed=seed,
        workers=settings.train.workers, use_multiprocessing=False,
    )
    val_batches = FaceBatches(training.images[val_rows], training.keypoints[np.ix_(val_rows, columns)], PREDICT_BATCH)
    return PreparedFold(specialist, fold, seed, train_rows, val_rows, train_batches, val_batches)


def learning_rate(train: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's learning rate: fixed for ``train_stage``'s plateau halving, or a per-step cosine schedule.

    The cosine schedule reaches 0 at ``train.epochs``, so a short budget still ends on small steps.
    """
    if train.schedule == "plateau":
        return train.learning_rate
    warmup = min(train.warmup_epochs, train.epochs - 1) * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else train.learning_rate, train.epochs * steps_per_epoch - warmup, alpha=0.0,
        warmup_target=train.learning_rate if warmup else None, warmup_steps=warmup,
    )


def build_fold_model(prepared: PreparedFold, settings: SpecialistConfig) -> keras.Model:
    """The specialist's model of its config's family, seeded by the fold, standardised on its training targets."""
    keras.utils.set_random_seed(prepared.seed)
    return build_model(
        settings.model, *target_statistics(prepared.train_batches.targets),
        learning_rate(settings.train, len(prepared.train_batches)), name=prepared.name,
    )


def train_stage(
    model: keras.Model, prepared: PreparedFold, train: TrainConfig, *, epochs: int, log_prefix: str, callbacks=(),
    initial_epoch: int = 0,
) -> keras.callbacks.History:
    """Fit on the fold's batches with early stopping on validation RMSE, and LR halving unless the rate
    follows a schedule. A trainer of several stages calls this once per stage."""
    plateau = [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_rmse", mode="min", factor=0.5, patience=train.lr_patience, min_lr=train.min_learning_rate,
        )
    ] if train.schedule == "plateau" else []
    return model.fit(
        prepared.train_batches,
        validation_data=prepared.val_batches,
        epochs=epochs,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_rmse", mode="min", patience=train.patience, restore_best_weights=True
            ),
            *plateau,
            _EpochLog(log_prefix, epochs),
            *([_TimeBudget(train.max_minutes)] if train.max_minutes > 0 else []),
            *callbacks,
        ],
    )


def predict_fold(model: keras.Model, prepared: PreparedFold, training: TrainingSet, test: TestSet,
                 folds: Folds) -> dict[tuple[str, str], pd.DataFrame]:
    """Out-of-fold predictions for every validation face (labelled or not) and the test set's, each plain
    and with flip TTA."""
    coordinates = list(prepared.specialist.coordinates)
    oof_rows = folds.validation_rows(prepared.fold)
    predictions = {}
    for kind, images, key, ids in (("oof", training.images[oof_rows], "row", oof_rows),
                                   ("test", test.images, "ImageId", test.image_ids)):
        flipped = predict_with_flip(model, images, prepared.specialist, mirror_axis=folds.flip_axis)
        for variant, values in zip(("plain", "flip"), flipped):
            frame = pd.DataFrame(values, columns=coordinates)
            frame.insert(0, key, ids)
            predictions[kind, variant] = frame
    return predictions


def fit_fold(job: FoldJob, callbacks=()) -> tuple[FoldResult, FoldArtifacts]:
    """One fold job, start to finish (today one training stage), its artifacts returned rather than written:
    a fold's own process writes them into the run, a cluster's worker hands them to the driver."""
    settings = job.config.specialist(job.specialist)
    prepared = prepare_fold(job.specialist, job.fold, settings, job.training, job.folds, job.seed)
    model = build_fold_model(prepared, settings)
    started = time.perf_counter()
    history = train_stage(model, prepared, settings.train, epochs=settings.train.epochs, log_prefix=job.label,
                          callbacks=callbacks)
    seconds = time.perf_counter() - started
    trained_epochs = len(history.history["loss"])
    result = FoldResult(
        job.specialist, job.fold, float(np.nanmin(history.history.get("val_rmse", [np.nan]))), trained_epochs,
        seconds, trained_epochs * len(prepared.train_rows) / seconds,
    )
    report = {**result.__dict__, "train_faces": len(prepared.train_rows), "val_faces": len(prepared.val_rows),
              "backend": keras.backend.backend()}
    predictions = predict_fold(model, prepared, job.training, job.test, job.folds)
    return result, FoldArtifacts(model, predictions, pd.DataFrame(history.history), job.config.to_dict(), report)


def train_fold(job: FoldJob) -> FoldResult:
    """One fold job, trained and written into its run."""
    result, artifacts = fit_fold(job)
    Run(job.run_dir).write_fold(job.specialist, job.fold, artifacts)
    return result
