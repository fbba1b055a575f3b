"""Train one specialist on one fold; write its model, predictions and history atomically.

``runs/<run>/<specialist>/fold<k>/`` is made in a temporary folder and renamed when complete,
so a folder that exists is a finished fold and a killed run resumes at the next one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tomli_w

from .artifacts import PREDICTIONS, FoldResult, fold_dir
from .augment import Augmenter
from .config import Config, SpecialistConfig, TrainConfig
from .data import TestSet, TrainingSet
from .dataset import FaceBatches
from .folds import Folds
from .errors import InputError
from .io import atomic_path
from .model import build_model, target_statistics
from .predict import PREDICT_BATCH, predict_with_flip
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


def fold_seed(config: Config, fold: int) -> int:
    """The seed of one fold's weights, shuffling and augmentation."""
    return config.seed * 1000 + fold


def fold_rows(name: str, fold: int, training: TrainingSet, folds: Folds) -> tuple[np.ndarray, np.ndarray]:
    """A fold's training and validation rows that hold any of the specialist's keypoints."""
    specialist = SPECIALISTS[name]
    train_rows = labelled_rows(training.keypoints, folds.training_rows(fold), specialist)
    val_rows = labelled_rows(training.keypoints, folds.validation_rows(fold), specialist)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise InputError(
            "--limit", f"fold {fold} has {len(train_rows)} training and {len(val_rows)} validation faces "
            f"labelled for the {name} specialist: use more faces or fewer folds"
        )
    return train_rows, val_rows


def face_batches(
    name: str, settings: SpecialistConfig, training: TrainingSet, train_rows: np.ndarray, val_rows: np.ndarray,
    seed: int,
) -> tuple[FaceBatches, FaceBatches]:
    """Augmented, shuffled training batches and plain validation batches of one specialist's coordinates."""
    specialist = SPECIALISTS[name]
    columns = specialist.columns
    train_batches = FaceBatches(
        training.images[train_rows], training.keypoints[np.ix_(train_rows, columns)], settings.train.batch_size,
        augmenter=Augmenter(settings.augment, specialist.flip_permutation), shuffle=True, seed=seed,
        workers=settings.train.workers, use_multiprocessing=False,
    )
    val_batches = FaceBatches(training.images[val_rows], training.keypoints[np.ix_(val_rows, columns)], PREDICT_BATCH)
    return train_batches, val_batches


def learning_rate(train: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's learning rate: fixed for ``fit``'s plateau halving, or a per-step cosine schedule.

    The cosine schedule reaches 0 at ``train.epochs``, so a short budget still ends on small steps.
    """
    if train.schedule == "plateau":
        return train.learning_rate
    warmup = min(train.warmup_epochs, train.epochs - 1) * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else train.learning_rate, train.epochs * steps_per_epoch - warmup, alpha=0.0,
        warmup_target=train.learning_rate if warmup else None, warmup_steps=warmup,
    )


def fit(
    model: keras.Model, train_batches: FaceBatches, val_batches: FaceBatches, train: TrainConfig, *,
    epochs: int, log_prefix: str, callbacks=(), initial_epoch: int = 0,
) -> keras.callbacks.History:
    """Fit with early stopping on validation RMSE, and LR halving unless the rate follows a schedule."""
    plateau = [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_rmse", mode="min", factor=0.5, patience=train.lr_patience, min_lr=train.min_learning_rate,
        )
    ] if train.schedule == "plateau" else []
    return model.fit(
        train_batches,
        validation_data=val_batches,
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


def train_fold(
    name: str,
    fold: int,
    config: Config,
    training: TrainingSet,
    test: TestSet,
    folds: Folds,
    run_dir: Path,
) -> FoldResult:
    specialist = SPECIALISTS[name]
    settings = config.specialist(name)
    train_rows, val_rows = fold_rows(name, fold, training, folds)
    seed = fold_seed(config, fold)
    keras.utils.set_random_seed(seed)
    train_batches, val_batches = face_batches(name, settings, training, train_rows, val_rows, seed)
    model = build_model(
        *target_statistics(train_batches.targets), settings.model,
        learning_rate(settings.train, len(train_batches)), name=f"{name}_fold{fold}",
    )
    started = time.perf_counter()
    history = fit(model, train_batches, val_batches, settings.train, epochs=settings.train.epochs,
                  log_prefix=f"[{name} fold {fold}]")
    seconds = time.perf_counter() - started
    trained_epochs = len(history.history["loss"])

    # Out-of-fold predictions for every validation face (labelled or not), and the test set's.
    oof_rows = folds.validation_rows(fold)
    oof, oof_tta = predict_with_flip(model, training.images[oof_rows], specialist)
    test_plain, test_tta = predict_with_flip(model, test.images, specialist)
    coordinates = list(specialist.coordinates)
    frames = {
        "oof": pd.DataFrame(oof, columns=coordinates).assign(row=oof_rows),
        "oof_tta": pd.DataFrame(oof_tta, columns=coordinates).assign(row=oof_rows),
        "test": pd.DataFrame(test_plain, columns=coordinates).assign(ImageId=test.image_ids),
        "test_tta": pd.DataFrame(test_tta, columns=coordinates).assign(ImageId=test.image_ids),
    }
    val_rmse = history.history.get("val_rmse", [np.nan])
    result = FoldResult(
        name, fold, float(np.nanmin(val_rmse)), trained_epochs, seconds,
        trained_epochs * len(train_rows) / seconds,
    )
    with atomic_path(fold_dir(run_dir, name, fold), directory=True) as tmp:
        model.save(tmp / "model.keras")
        for key, frame in frames.items():
            key_column = frame.columns[-1]
            frame[[key_column, *coordinates]].to_csv(tmp / PREDICTIONS[key], index=False)
        pd.DataFrame(history.history).rename_axis("epoch").to_csv(tmp / "history.csv")
        (tmp / "config.toml").write_text(tomli_w.dumps(config.to_dict()))
        (tmp / "fold.json").write_text(json.dumps({**result.__dict__, "train_faces": len(train_rows),
                                                   "val_faces": len(val_rows), "backend": keras.backend.backend()},
                                                  indent=2))
    return result
