"""The fold stages every specialist trains through, and the process each fold trains in."""

import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from competition.config import Config, SpecialistConfig, TrainConfig, load_config
from competition.cv import Budget, in_fresh_process, job_minutes, run_cv, train_job
from competition.data import TestSet, TrainingSet, load_test
from competition.dataset import FaceBatches
from competition.errors import InputError
from competition.folds import Folds, make_folds
from competition.jobs import FoldJob, FoldResult
from competition.models.regression import Config as RegressionConfig
from competition.run import Run
from competition.train import (
    CosineSchedule,
    budgeted,
    build_fold_model,
    prepare_fold,
    tensorboard_logs,
    train_stage,
)

TINY = RegressionConfig(filters=[4], convs_per_block=1, dense_units=4, dropout=0.0)


def AugmentConfigForFlips():  # noqa: N802 - a config: every face flipped, nothing else
    from competition.config import AugmentConfig

    return AugmentConfig(flip=1.0, rotate=0, scale=0, shift=0, brightness=0, contrast=0)


def tiny_settings(**train) -> SpecialistConfig:
    return SpecialistConfig(model=TINY, train=TrainConfig(batch_size=32, **train))


def prepared_partial(training, settings, faces=96):
    folds = make_folds(training.head(faces), 3, 0)
    return prepare_fold("partial", 0, settings, training.head(faces), folds, seed=0)


@pytest.mark.parametrize("max_minutes, epochs_run", [(0.0, 3), (1e-9, 1)])
def test_a_time_budget_stops_after_the_epoch_that_spends_it(training, max_minutes, epochs_run):
    settings = tiny_settings(max_minutes=max_minutes)
    prepared = prepared_partial(training, settings)
    model = build_fold_model(prepared, settings)
    history = train_stage(model, prepared, settings.train, epochs=3, log_prefix="[t]")
    assert len(history.history["loss"]) == epochs_run
    assert np.isfinite(history.history["val_rmse"]).all()


def test_a_fold_trains_on_its_labelled_training_rows_and_validates_on_its_own():
    keypoints = np.full((6, 30), np.nan, np.float32)
    keypoints[[0, 1, 3, 4], 0] = 40.0  # rows 2 and 5 have none of their keypoints
    training = TrainingSet(np.zeros((6, 96, 96), np.uint8), keypoints, "f")
    folds = Folds(np.array([0, 1, 0, 1, 0, 1]), 2, 0, "f", training.style)
    prepared = prepare_fold("partial", 1, tiny_settings(), training, folds, seed=0)
    assert list(prepared.train_rows) == [0, 4] and list(prepared.val_rows) == [1, 3]


def test_a_fold_with_a_teacher_trains_on_its_answers_where_labels_are_missing_and_validates_on_labels():
    keypoints = np.full((4, 30), np.nan, np.float32)
    keypoints[:, :4] = 40.0  # the eye centres labelled on every face, nothing else
    keypoints[0, 4:8] = 50.0
    training = TrainingSet(np.zeros((4, 96, 96), np.uint8), keypoints, "f")
    folds = Folds(np.array([0, 1, 0, 1]), 2, 0, "f", training.style)
    teacher = np.full((4, 30), np.nan)
    teacher[[0, 2]] = 33.0  # fold 1's training rows
    still = AugmentConfigForFlips()
    still.flip = 0.0
    settings = SpecialistConfig(model=TINY, augment=still, train=TrainConfig(batch_size=32))
    prepared = prepare_fold("full", 1, settings, training, folds, 0, teacher, filled_weight=0.25)
    assert list(prepared.train_rows) == [0, 2]
    _, targets, weights = prepared.train_batches[0]
    order = np.argsort(prepared.train_batches.order)  # the batch's rows back in train_rows order
    targets, weights = targets[order], weights[order]
    np.testing.assert_allclose(targets[:, :4], 40.0, atol=1e-3)  # labels kept
    np.testing.assert_allclose(targets[0, 4:8], 50.0, atol=1e-3)
    np.testing.assert_allclose(targets[1, 4:], 33.0, atol=1e-3)  # the teacher's where labels are missing
    np.testing.assert_array_equal(weights[0], [1.0] * 8 + [0.25] * 22)
    np.testing.assert_array_equal(weights[1], [1.0] * 4 + [0.25] * 26)
    assert np.isnan(prepared.val_batches[0][1][:, 4:]).all()  # validation: labels alone

    teacher[1] = 33.0  # answers a validation face of fold 1
    with pytest.raises(ValueError, match="outside the fold's training rows"):
        prepare_fold("full", 1, tiny_settings(), training, folds, 0, teacher)


def test_the_cosine_schedule_warms_up_peaks_and_ends_at_zero():
    schedule = CosineSchedule(2e-3, 10, warmup_epochs=2)
    rate = [schedule.rate(step, steps_per_epoch=5) for step in range(51)]
    assert rate[0] == 0.0 and np.isclose(rate[5], 1e-3)  # halfway up after one of two warm-up epochs
    assert np.isclose(max(rate), 2e-3) and int(np.argmax(rate)) == 10
    assert np.isclose(rate[30], 1e-3)  # halfway down halfway through the 40 decay steps
    assert all(a >= b for a, b in zip(rate[10:], rate[11:])) and rate[50] < 1e-9


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_budget_replans_the_cosine_to_the_last_epoch_that_fits():
    """At 20 s per epoch, a 65-second budget fits 3 of the 10 epochs: the cosine is re-planned to end at 0
    after the third, where training stops, rather than being cut off near its peak."""
    clock, steps = _Clock(), 4
    schedule = CosineSchedule(1e-3, 10, warmup_epochs=1, minutes=65 / 60, clock=clock)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    schedule.set_model(model)
    schedule.set_params({"steps": steps, "epochs": 10})
    model.stop_training = False
    schedule.on_train_begin()
    epochs_run, rates = 0, []
    for epoch in range(10):
        schedule.on_epoch_begin(epoch)
        for batch in range(steps):
            schedule.on_train_batch_begin(batch)
            rates.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
        clock.now += 20.0
        schedule.on_epoch_end(epoch)
        epochs_run += 1
        if model.stop_training:
            break
    assert epochs_run == 3 and schedule.planned_epochs == 3
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == 0.0
    assert np.allclose(rates[:5], [0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3])  # warm-up, then the peak
    assert np.isclose(rates[8], 5e-4)  # halfway down after one of the two decay epochs


def test_cosine_training_skips_the_plateau_halving_and_anneals(training):
    settings = tiny_settings(schedule="cosine", learning_rate=1e-3, epochs=3, warmup_epochs=1, lr_patience=1)
    prepared = prepared_partial(training, settings)
    model = build_fold_model(prepared, settings)
    train_stage(model, prepared, settings.train, epochs=3, log_prefix="[t]")
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) < 1e-9


@pytest.mark.parametrize("max_minutes, scored", [(0.0, [2, 4, 5]), (1e-9, [1])])
def test_sparse_validation_scores_every_nth_epoch_and_the_last_and_keeps_the_best_scored(
    training, max_minutes, scored, capsys
):
    settings = tiny_settings(
        schedule="cosine", learning_rate=3e-3, epochs=5, warmup_epochs=0, validate_every=2, max_minutes=max_minutes
    )
    prepared = prepared_partial(training, settings)
    model = build_fold_model(prepared, settings)
    history = train_stage(model, prepared, settings.train, epochs=5, log_prefix="[t]").history
    val_rmse = np.array(history["val_rmse"])
    assert list(np.flatnonzero(np.isfinite(val_rmse)) + 1) == scored  # a budget's one epoch is the last
    kept = model.evaluate(prepared.val_batches, verbose=0, return_dict=True)["rmse"]
    assert kept == pytest.approx(np.nanmin(val_rmse), rel=1e-5)
    shown = re.findall(r"^\[t\] epoch (\d)/\d  rmse [\d.]+  val_rmse (-|[\d.]+)  ", capsys.readouterr().out, re.M)
    assert [int(epoch) for epoch, value in shown if value != "-"] == scored and len(shown) == len(val_rmse)


def test_tensorboard_logs_hold_the_scored_validation_epochs_only(training, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = tiny_settings(schedule="cosine", epochs=3, warmup_epochs=0, validate_every=2)
    prepared = prepared_partial(training, settings)
    model = build_fold_model(prepared, settings)
    train_stage(
        model,
        prepared,
        settings.train,
        epochs=3,
        log_prefix="[t]",
        callbacks=tensorboard_logs(tmp_path / "logs", "[t]"),
    )
    steps = {}
    for kind in ("train", "validation"):
        events = EventAccumulator(str(tmp_path / "logs" / kind), size_guidance={"tensors": 0}).Reload()
        steps[kind] = [event.step for event in events.Tensors("epoch_rmse")]
    assert steps == {"train": [0, 1, 2], "validation": [1, 2]}


@pytest.mark.slow
def test_a_model_can_overfit_32_faces_to_well_under_a_pixel(training):
    """The model, loss and optimizer can learn: with no augmentation, 32 faces are fitted almost exactly.
    (A network that learns nothing stays near the mean face, about 3 px here.)"""
    rows = np.flatnonzero(training.style == "full")[:32]
    images, targets = training.images[rows], training.keypoints[rows]
    batches = FaceBatches(images, targets, 32)
    settings = SpecialistConfig(
        model=RegressionConfig(
            filters=[16, 32, 64], convs_per_block=1, dense_units=128, dropout=0.0, input_downsample=2
        ),
        train=TrainConfig(learning_rate=3e-3, schedule="cosine", epochs=150, warmup_epochs=5),
    )
    from competition.models import build_model, target_statistics

    keras.utils.set_random_seed(0)
    train = settings.train
    model = build_model(settings.model, *target_statistics(targets), train.learning_rate)
    mean_rmse = float(np.sqrt(np.nanmean((targets - np.nanmean(targets, axis=0)) ** 2)))
    model.fit(
        batches,
        epochs=train.epochs,
        verbose=0,
        callbacks=[CosineSchedule(train.learning_rate, train.epochs, warmup_epochs=train.warmup_epochs)],
    )
    fitted = model.evaluate(batches, verbose=0, return_dict=True)["rmse"]
    assert mean_rmse > 2.0 and fitted < 0.3, (mean_rmse, fitted)


def test_face_batches_are_the_same_whatever_the_number_of_workers(training):
    """Keras asks a PyDataset for batches from worker threads in any order; the batches (augmented and
    shuffled) must not depend on how many workers there are."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from competition.augment import Augmenter
    from competition.config import AugmentConfig
    from competition.schema import SPECIALISTS

    partial = SPECIALISTS["partial"]

    def epochs_of_batches(workers: int) -> list[np.ndarray]:
        batches = FaceBatches(
            training.images[:100],
            training.keypoints[:100][:, partial.columns],
            16,
            augmenter=Augmenter(AugmentConfig(), partial.flip_permutation),
            shuffle=True,
            seed=3,
            workers=workers,
            use_multiprocessing=False,
        )
        adapter = PyDatasetAdapter(batches, shuffle=False)
        seen = []
        for _ in range(2):
            seen += [np.concatenate([x.reshape(len(x), -1), y], axis=1) for x, y in adapter.get_numpy_iterator()]
            adapter.on_epoch_end()
        return seen

    one, four = epochs_of_batches(1), epochs_of_batches(4)
    assert len(one) == len(four) == 14
    for a, b in zip(one, four):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(one[0], one[7])  # the second epoch is shuffled and augmented afresh


@pytest.mark.slow
def test_a_folds_own_process_hands_back_its_input_error_intact(training, tmp_path):
    unlabelled = TrainingSet(training.images[:8], np.full((8, 30), np.nan, np.float32), training.fingerprint)
    folds = Folds(np.array([0, 1] * 4), 2, 0, training.fingerprint, unlabelled.style)
    test = TestSet(np.arange(1, 3), training.images[:2])
    with pytest.raises(InputError) as error:
        in_fresh_process(train_job, FoldJob(tmp_path, "partial", 0, Config(), unlabelled, test, folds))
    assert error.value.path == "--limit" and "fold 0 has 0 training and 0 validation faces" in str(error.value)
    assert not (tmp_path / "partial").exists()


def imports_library(modules: list[str], library: str) -> bool:
    """Whether importing ``modules`` in a fresh interpreter imports ``library`` too."""
    check = f"import sys, {', '.join(modules)}; print({library!r} in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    return result.stdout.strip() == "True"


def test_the_process_that_holds_the_data_never_loads_keras():
    assert not imports_library(
        [
            "competition.cli",
            "competition.cv",
            "competition.blend",
            "competition.show",
            "competition.runs",
            "competition.run",
            "competition.head",
            "competition.evaluate",
            "competition.config",
        ],
        "keras",
    )


def test_fkp_starts_without_importing_scikit_learn():
    """scikit-learn's import took over a second of every fkp command's start (2.35 s to import the CLI, 1.18 s
    without it); it is imported where folds are split and second stages fitted."""
    assert not imports_library(
        ["competition.cli", "competition.folds", "competition.head", "competition.run"], "sklearn"
    )


def test_a_fold_flips_about_the_axis_stored_with_its_folds(training):
    """Augmentation and flip TTA both mirror x about the folds' axis."""
    import dataclasses

    from competition.train import predict_fold

    folds = dataclasses.replace(make_folds(training.head(64), 2, 0), mirror_axis=99.0)
    settings = SpecialistConfig(model=TINY, augment=AugmentConfigForFlips(), train=TrainConfig(batch_size=32))
    prepared = prepare_fold("partial", 0, settings, training.head(64), folds, seed=0)
    assert prepared.train_batches.augmenter.mirror_axis == 99.0
    _, points = prepared.train_batches[0]
    rows = prepared.train_rows[prepared.train_batches.order[:32]]
    original = training.keypoints[rows][:, [0, 2]]  # left and right eye x
    np.testing.assert_allclose(points[:, [0, 2]], 99.0 - original[:, [1, 0]], atol=1e-3)  # always flipped
    model = build_fold_model(prepared, settings)
    predictions = predict_fold(model, prepared, training.head(64), TestSet(np.arange(1, 3), training.images[:2]), folds)
    plain, flipped = predictions["test", "plain"], predictions["test", "tta"]
    # An untrained model predicts the mean face on every face, mirrored or not: TTA averages it with its mirror.
    mean_left_x, mean_right_x = plain["left_eye_center_x"].iloc[0], plain["right_eye_center_x"].iloc[0]
    assert flipped["left_eye_center_x"].iloc[0] == pytest.approx((mean_left_x + 99.0 - mean_right_x) / 2, abs=1e-3)


def test_a_run_budget_gives_each_job_its_share_less_the_time_outside_training():
    """60 minutes for 5 jobs: 30 s are kept for the head, so each job is owed (3600 - 30) / 5 = 714 s, of which
    the first trains 714 - 45 (the first job's guessed set-up and predictions) = 669 s."""
    clock = _Clock()
    budget = Budget(60, 5, clock=clock)
    assert budget.job_minutes(5) == pytest.approx(669 / 60)
    clock.now = 700.0  # the first job came back after 700 s, 650 of them training: 50 s outside training
    budget.spent([FoldResult("full", 0, 1.6, 100, 650.0, 900.0)], 700.0)
    # four jobs share 4 * 714 + 14 (the first job's unspent seconds) = 2870 s, less 50 each outside training
    assert budget.job_minutes(4) == pytest.approx((2870 / 4 - 50) / 60)
    clock.now = 3600.0  # overspent: a late job still trains its epoch
    assert budget.job_minutes(3) == pytest.approx(1 / 60)


def test_a_resumed_run_owes_each_remaining_job_its_share():
    budget = Budget(60, 5, clock=_Clock())
    assert budget.job_minutes(2) == pytest.approx((714 - 45) / 60)


class _BudgetRecorder:
    """A fold executor that trains nothing: it records each job's minutes and reports it trained for 0 s."""

    batch = 1

    def __init__(self):
        self.minutes = []

    def train(self, jobs, run, log):
        self.minutes += [job.minutes for job in jobs]
        return [FoldResult(job.specialist, job.fold, 1.0, 1, 0.0, 1.0) for job in jobs]

    def close(self):
        pass


def test_fkp_cv_hands_each_fold_job_its_minutes_from_budget_minutes(training, sample_dir, tmp_path):
    recorder, lines = _BudgetRecorder(), []
    config = load_config("smoke", ["specialists.partial.enabled=false", "budget_minutes=10"])
    folds = make_folds(training.head(40), 2, 42)
    run_cv(
        config,
        training.head(40),
        load_test(sample_dir),
        folds,
        Run(tmp_path / "run"),
        executor=recorder,
        log=lines.append,
    )
    # 2 jobs owed (600 - 30) / 2 = 285 s each; the first trains 285 - 45 s, the second what the first left
    assert recorder.minutes[0] == pytest.approx(240 / 60, abs=1e-3)
    assert recorder.minutes[1] == pytest.approx(570 / 60, abs=0.05)
    assert lines[0] == "[full fold 0]: 4.0 minutes of training, from budget_minutes = 10"


def test_without_a_budget_fold_jobs_keep_their_configs_minutes(training, sample_dir, tmp_path):
    recorder = _BudgetRecorder()
    config = load_config("smoke", ["specialists.partial.enabled=false"])
    run_cv(
        config,
        training.head(40),
        load_test(sample_dir),
        make_folds(training.head(40), 2, 42),
        Run(tmp_path / "run"),
        executor=recorder,
        log=print,
    )
    assert recorder.minutes == [0.0, 0.0]


@pytest.mark.parametrize("guard, minutes, planned", [(0, 3, 3), (2, 3, 2), (2, 1.5, 1.5), (2, 0, 2)])
def test_a_jobs_budget_bounds_its_training_within_the_configs_own_guard(guard, minutes, planned):
    settings = tiny_settings(max_minutes=guard)
    assert budgeted(settings, minutes).train.max_minutes == planned
    assert settings.train.max_minutes == guard  # the config itself is left as it was


def test_a_tuning_trial_trains_as_long_as_its_fold_would_in_fkp_cv():
    cpu = load_config("cpu")  # 60 minutes, one specialist, 5 folds: (3600 - 30) / 5 - 45 s each
    assert cpu.budget_minutes == 60 and job_minutes(cpu, 5) == pytest.approx(669 / 60)
    assert job_minutes(load_config("smoke"), 5) == 0.0  # no budget: the config's own guard


def test_small_fold_jobs_sharing_a_process_print_no_retracing_warnings(monkeypatch, caplog):
    """Each fold job's model traces its train and test functions once; five small jobs one after another in the
    fold process (each function called once, as in `fkp cv --limit 40 --epochs 1`) printed "5 out of the last 5
    calls ... triggered tf.function retracing" on TensorFlow, counting the earlier jobs' traces as retracing."""
    import logging

    from competition import train

    def tiny_job(job):  # a fold job's shape: a new model, one training step, one validation pass
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        model.evaluate(x, y, batch_size=8, verbose=0)
        return job

    monkeypatch.setattr(train, "train_fold", tiny_job)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        assert [train_job(fold) for fold in range(5)] == list(range(5))
    assert not [r.getMessage()[:80] for r in caplog.records if "retracing" in r.getMessage()]
