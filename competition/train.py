"""Train one specialist on one fold: ``prepare_fold -> build_fold_model -> train_stage -> predict_fold ->
write_fold``. `fkp cv` runs them in the fold process (``train_fold``) or on a Ray worker (``fit_fold``, whose
artifacts go back to the driver); `fkp tune` builds its trials from the same pieces, so a trial trains exactly
like a fold.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from .augment import Augmenter, FramingRange
from .config import InferenceConfig, SpecialistConfig, TrainConfig
from .data import TestSet, TrainingSet
from .dataset import FaceBatches
from .errors import InputError
from .folds import Folds
from .jobs import FoldJob, FoldResult
from .models import build_model, target_statistics
from .run import VARIANTS, FoldArtifacts, Run
from .schema import SPECIALISTS, Specialist
from .tta import PREDICT_BATCH, Reframe, predict_pixels, tta_model


def labelled_rows(keypoints: np.ndarray, rows: np.ndarray, specialist: Specialist) -> np.ndarray:
    """The rows among ``rows`` with any of the specialist's coordinates labelled."""
    return rows[~np.isnan(keypoints[np.ix_(rows, specialist.columns)]).all(axis=1)]


def epoch_scores(logs: dict | None) -> str:
    """An epoch's training and validation RMSE for a progress line; "-" where validation was not scored."""
    logs = logs or {}
    rmse, val_rmse = logs.get("rmse", math.nan), logs.get("val_rmse", math.nan)
    return f"rmse {rmse:.3f}  val_rmse {'-' if math.isnan(val_rmse) else f'{val_rmse:.3f}'}"


# Where a fold job's epochs go besides (instead of) their printed line: ``listener(label, epoch, epochs, line)``,
# set in the fold process when the run's progress is shown in a terminal (``cv.LocalFolds``).
epoch_listener = None


class _EpochLog(keras.callbacks.Callback):
    """One line per epoch, prefixed with what is training; out of the epochs ``plan`` now plans, if given. Handed
    to ``epoch_listener`` instead of printed where one is set."""

    def __init__(self, prefix: str, epochs: int, plan: CosineSchedule | None = None):
        super().__init__()
        self.prefix, self.epochs, self.plan = prefix, epochs, plan
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        epochs = self.plan.first_epoch + self.plan.planned_epochs if self.plan else self.epochs
        line = (
            f"{self.prefix} epoch {epoch + 1}/{epochs}  {epoch_scores(logs)}  lr {lr:.2g}  "
            f"{time.perf_counter() - self.started:.0f}s"
        )
        if epoch_listener is None:
            print(line, flush=True)
        else:
            epoch_listener(self.prefix, epoch + 1, epochs, line)


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


class CosineSchedule(keras.callbacks.Callback):
    """The cosine learning rate of a training stage: a linear warm-up from 0 to ``peak`` over ``warmup_epochs``,
    then half a cosine down to 0 at the stage's last epoch.

    With a wall-clock budget (``minutes``), the last epoch is planned again after every epoch, from the pace
    so far, as the last one that fits; the stage ends there. A slower machine then runs fewer epochs on the
    same curve, down to 0, instead of being cut off at a high rate. The rate is set before each step from a
    callback rather than by an optimizer schedule because the plan changes during training. (On JAX, reaching
    the optimizer from a callback syncs the training state, once per step.)
    """

    def __init__(
        self,
        peak: float,
        epochs: int,
        *,
        warmup_epochs: int = 0,
        first_epoch: int = 0,
        minutes: float = 0.0,
        clock=time.perf_counter,
    ):
        super().__init__()
        self.peak, self.epochs, self.first_epoch = peak, epochs, first_epoch
        self.warmup_epochs = min(warmup_epochs, epochs - 1)
        self.seconds, self.clock = minutes * 60, clock
        self.planned_epochs = epochs

    def rate(self, step: int, steps_per_epoch: int) -> float:
        """The rate of the stage's ``step`` (from 0) under the current plan."""
        warmup = self.warmup_epochs * steps_per_epoch
        if step < warmup:
            return self.peak * step / warmup
        decay = max(self.planned_epochs * steps_per_epoch - warmup, 1)
        return self.peak * 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay) / decay))

    def _set(self, step: int) -> None:
        self.model.optimizer.learning_rate = self.rate(step, self.params["steps"])

    def on_train_begin(self, logs=None):
        self.started = self.clock()
        self._set(0)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch - self.first_epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._set(self.epoch * self.params["steps"] + batch)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1 - self.first_epoch
        if self.seconds:
            pace = (self.clock() - self.started) / done
            self.planned_epochs = min(self.epochs, max(done, int(self.seconds // pace)))
        self._set(done * self.params["steps"])  # 0 after the last epoch
        if done >= self.planned_epochs:
            self.model.stop_training = True


class _SparseValidation(keras.callbacks.Callback):
    """Scores the validation faces every ``every`` epochs of the stage and on its last one, into the epoch's logs
    as ``val_*`` (NaN on the others), as fit's own validation would. On 2 cores, validating every epoch takes
    a ninth of a fold's budget; under a cosine schedule ending at 0 the last epoch is within 0.004 px of the best.
    Placed after the callbacks that end the stage, so it knows the last epoch, and before those reading val_*."""

    def __init__(self, batches: FaceBatches, every: int, first_epoch: int = 0):
        super().__init__()
        self.batches, self.every, self.first_epoch = batches, every, first_epoch

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1 - self.first_epoch
        scored = done % self.every == 0 or self.model.stop_training or epoch + 1 == self.params["epochs"]
        scores = self.model.evaluate(self.batches, verbose=0, return_dict=True) if scored else {}
        logs.update({f"val_{name}": scores.get(name, float("nan")) for name in ("loss", "rmse")})


class _ScoredTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, leaving out the validation metrics of epochs that were not scored
    (NaN, ``train.validate_every``) rather than drawing them as NaN points."""

    def on_epoch_end(self, epoch, logs=None):
        scored = {
            name: value for name, value in (logs or {}).items() if not (name.startswith("val_") and math.isnan(value))
        }
        super().on_epoch_end(epoch, scored)


def tensorboard_logs(folder: Path, label: str) -> list[keras.callbacks.Callback]:
    """TensorBoard logs of each epoch's metrics in ``folder`` (``tensorboard --logdir runs`` compares
    runs). Keras writes them through TensorFlow's summary writer, whatever the backend: where TensorFlow
    is not installed, one line says so and the fold trains without them."""
    if importlib.util.find_spec("tensorflow") is None:
        print(f"{label} no TensorBoard logs: they need TensorFlow installed", flush=True)
        return []
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted attempt's
    return [_ScoredTensorBoard(folder, write_graph=False)]


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
    name: str,
    fold: int,
    settings: SpecialistConfig,
    training: TrainingSet,
    folds: Folds,
    seed: int,
    teacher: np.ndarray | None = None,
    filled_weight: float = 1.0,
) -> PreparedFold:
    """The fold's training and validation rows that hold any of the specialist's keypoints, batched. With a
    ``teacher`` ((N, 30) answers, NaN on rows it must not teach), a training face's missing coordinates are the
    teacher's, weighed ``filled_weight`` in the loss; validation stays on the labels alone."""
    specialist = SPECIALISTS[name]
    columns = specialist.columns
    targets, labelled = training.keypoints, None
    if teacher is not None:
        training_rows = np.zeros(len(training), bool)
        training_rows[folds.training_rows(fold)] = True
        if not np.isnan(teacher[~training_rows]).all():
            raise ValueError(f"the teacher of fold {fold} answers faces outside the fold's training rows")
        targets = np.where(np.isnan(training.keypoints), teacher, training.keypoints)
        labelled = ~np.isnan(training.keypoints[:, columns[::2]])
    train_rows = labelled_rows(targets, folds.training_rows(fold), specialist)
    val_rows = labelled_rows(training.keypoints, folds.validation_rows(fold), specialist)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise InputError(
            "--limit",
            f"fold {fold} has {len(train_rows)} training and {len(val_rows)} validation faces "
            f"labelled for the {name} specialist: use more faces or fewer folds",
        )
    train_batches = FaceBatches(
        training.images[train_rows],
        targets[np.ix_(train_rows, columns)],
        settings.train.batch_size,
        augmenter=Augmenter(
            settings.augment,
            specialist.flip_permutation,
            FramingRange.of(training.keypoints[train_rows], specialist, settings.augment.framing_rarest),
            folds.flip_axis,
            columns,
        ),
        shuffle=True,
        seed=seed,
        workers=settings.train.workers,
        use_multiprocessing=False,
        labelled=None if labelled is None else labelled[train_rows],
        filled_weight=filled_weight,
    )
    val_batches = FaceBatches(training.images[val_rows], training.keypoints[np.ix_(val_rows, columns)], PREDICT_BATCH)
    return PreparedFold(specialist, fold, seed, train_rows, val_rows, train_batches, val_batches)


def build_fold_model(prepared: PreparedFold, settings: SpecialistConfig) -> keras.Model:
    """The specialist's model of its config's family, seeded by the fold, standardised on its training targets."""
    keras.utils.set_random_seed(prepared.seed)
    return build_model(
        settings.model,
        *target_statistics(prepared.train_batches.targets),
        settings.train.learning_rate,
        name=prepared.name,
        weight_decay=settings.train.weight_decay,
    )


def train_stage(
    model: keras.Model,
    prepared: PreparedFold,
    train: TrainConfig,
    *,
    epochs: int,
    log_prefix: str,
    callbacks=(),
    initial_epoch: int = 0,
) -> keras.callbacks.History:
    """Fit on the fold's batches with early stopping on validation RMSE, and the config's learning-rate
    schedule: plateau halving, or a cosine from ``train.learning_rate`` planned within ``train.max_minutes``."""
    if train.schedule == "cosine":
        cosine = CosineSchedule(
            train.learning_rate,
            epochs - initial_epoch,
            warmup_epochs=train.warmup_epochs,
            first_epoch=initial_epoch,
            minutes=train.max_minutes,
        )
        schedule = [cosine]
    else:
        cosine = None
        schedule = [
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_rmse",
                mode="min",
                factor=0.5,
                patience=train.lr_patience,
                min_lr=train.min_learning_rate,
            ),
            *([_TimeBudget(train.max_minutes)] if train.max_minutes > 0 else []),
        ]
    sparse = train.validate_every > 1
    return model.fit(
        prepared.train_batches,
        validation_data=None if sparse else prepared.val_batches,
        epochs=epochs,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[
            *schedule,
            *([_SparseValidation(prepared.val_batches, train.validate_every, initial_epoch)] if sparse else []),
            keras.callbacks.EarlyStopping(  # from the first scored epoch: it would take a NaN for its best
                monitor="val_rmse",
                mode="min",
                patience=train.patience,
                restore_best_weights=True,
                start_from_epoch=initial_epoch + train.validate_every - 1,
            ),
            _EpochLog(log_prefix, epochs, cosine),
            *callbacks,
        ],
    )


def predict_fold(
    model: keras.Model,
    prepared: PreparedFold,
    training: TrainingSet,
    test: TestSet,
    folds: Folds,
    shift: int = 0,
    reframe: Reframe | None = None,
) -> dict[tuple[str, str], pd.DataFrame]:
    """Out-of-fold predictions for every validation face (labelled or not) and the test set's, each plain
    and with TTA (flips, whole-pixel shifts of ``shift``, and ``reframe``)."""
    coordinates = list(prepared.specialist.coordinates)
    oof_rows = folds.validation_rows(prepared.fold)
    graph = tta_model(model, prepared.specialist, folds.flip_axis, shift, reframe)  # traced once, for both sets
    predictions = {}
    for kind, images, key, ids in (
        ("oof", training.images[oof_rows], "row", oof_rows),
        ("test", test.images, "ImageId", test.image_ids),
    ):
        for variant, values in zip(VARIANTS, predict_pixels(graph, images)):
            frame = pd.DataFrame(values, columns=coordinates)
            frame.insert(0, key, ids)
            predictions[kind, variant] = frame
    return predictions


def fold_reframe(inference: InferenceConfig, train_keypoints: np.ndarray, specialist: Specialist) -> Reframe | None:
    """The fold's test-time re-framing (its TTA predictions'): into the middle of its training faces' framings
    (its validation faces' are never read); None when off, or for a specialist without the eye centres."""
    if not inference.reframe:
        return None
    framing = FramingRange.of(train_keypoints, specialist, middle=inference.reframe)
    return Reframe(framing.bounds(), inference.reframe_weight) if framing else None


def budgeted(settings: SpecialistConfig, minutes: float) -> SpecialistConfig:
    """A specialist's settings for a fold job given ``minutes`` of training from the run's budget (0: none):
    its ``train.max_minutes`` becomes them, or stays where the config's own guard is tighter."""
    if not minutes:
        return settings
    guard = min(settings.train.max_minutes or minutes, minutes)
    return dataclasses.replace(settings, train=dataclasses.replace(settings.train, max_minutes=guard))


def fit_fold(job: FoldJob, logs_dir: Path, callbacks=()) -> tuple[FoldResult, FoldArtifacts]:
    """One fold job, start to finish. Its TensorBoard logs go in ``logs_dir`` and its artifacts are returned
    rather than written: the fold process writes them into the run, a cluster's worker hands them to the driver."""
    settings = budgeted(job.config.specialist(job.specialist), job.minutes)
    prepared = prepare_fold(
        job.specialist,
        job.fold,
        settings,
        job.training,
        job.folds,
        job.seed,
        job.teacher,
        job.config.distill.filled_weight,
    )
    model = build_fold_model(prepared, settings)
    started = time.perf_counter()
    history = pd.DataFrame(
        train_stage(
            model,
            prepared,
            settings.train,
            epochs=settings.train.epochs,
            log_prefix=job.label,
            callbacks=[*tensorboard_logs(logs_dir, job.label), *callbacks],
        ).history
    )
    seconds = time.perf_counter() - started
    reframe = fold_reframe(job.config.inference, job.training.keypoints[prepared.train_rows], prepared.specialist)
    predictions = predict_fold(
        model, prepared, job.training, job.test, job.folds, job.config.inference.tta_shift, reframe
    )
    best_val_rmse = float(np.nanmin(history.get("val_rmse", pd.Series([np.nan]))))
    result = FoldResult(
        job.specialist,
        job.fold,
        best_val_rmse,
        len(history),
        seconds,
        len(history) * len(prepared.train_rows) / seconds,
    )
    report = {
        **result.__dict__,
        "train_faces": len(prepared.train_rows),
        "val_faces": len(prepared.val_rows),
        "backend": keras.backend.backend(),
        "max_minutes": settings.train.max_minutes,
        **({"reframe": dataclasses.asdict(reframe)} if reframe else {}),
    }
    return result, FoldArtifacts(model, predictions, history, job.config.to_dict(), report)


def train_fold(job: FoldJob) -> FoldResult:
    """One fold job, trained and written into its run."""
    run = Run(job.run_dir)
    result, artifacts = fit_fold(job, run.training_logs_dir(job.specialist, job.fold))
    run.write_fold(job.specialist, job.fold, artifacts)
    return result
