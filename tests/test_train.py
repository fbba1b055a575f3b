"""The fitting schedule every specialist trains with, and the process each fold trains in."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from competition.config import Config, ModelConfig, TrainConfig
from competition.cv import train_in_fresh_process
from competition.data import TestSet, TrainingSet
from competition.errors import InputError
from competition.folds import Folds
from competition.dataset import FaceBatches
from competition.model import build_model, target_statistics
from competition.schema import SPECIALISTS
from competition.train import fit, learning_rate

TINY = ModelConfig(filters=[4], convs_per_block=1, dense_units=4, dropout=0.0)


@pytest.mark.parametrize("max_minutes, epochs_run", [(0.0, 3), (1e-9, 1)])
def test_a_time_budget_stops_after_the_epoch_that_spends_it(training, max_minutes, epochs_run):
    columns = SPECIALISTS["partial"].columns
    targets = training.keypoints[:64, columns]
    batches = FaceBatches(training.images[:64], targets, 32)
    model = build_model(*target_statistics(targets), TINY, 1e-3)
    keras.utils.set_random_seed(0)
    history = fit(model, batches, batches, TrainConfig(max_minutes=max_minutes), epochs=3, log_prefix="[t]")
    assert len(history.history["loss"]) == epochs_run
    assert np.isfinite(history.history["val_rmse"]).all()


def test_the_cosine_schedule_warms_up_peaks_and_ends_at_zero():
    train = TrainConfig(schedule="cosine", learning_rate=2e-3, epochs=10, warmup_epochs=2)
    schedule = learning_rate(train, steps_per_epoch=5)
    rate = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(51)]
    assert rate[0] == 0.0 and np.isclose(rate[5], 1e-3)  # halfway up after one of two warm-up epochs
    assert np.isclose(max(rate), 2e-3) and int(np.argmax(rate)) == 10
    assert all(a >= b for a, b in zip(rate[10:], rate[11:])) and rate[50] < 1e-9
    assert learning_rate(TrainConfig(schedule="plateau", learning_rate=3e-4), 5) == 3e-4


def test_cosine_training_skips_the_plateau_halving_and_anneals(training):
    columns = SPECIALISTS["partial"].columns
    targets = training.keypoints[:64, columns]
    batches = FaceBatches(training.images[:64], targets, 32)
    train = TrainConfig(schedule="cosine", learning_rate=1e-3, epochs=3, warmup_epochs=1, lr_patience=0)
    model = build_model(*target_statistics(targets), TINY, learning_rate(train, len(batches)))
    keras.utils.set_random_seed(0)
    fit(model, batches, batches, train, epochs=3, log_prefix="[t]")
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) < 1e-9


def test_a_folds_own_process_hands_back_its_input_error_intact(training, tmp_path):
    unlabelled = TrainingSet(training.images[:8], np.full((8, 30), np.nan, np.float32), training.fingerprint)
    folds = Folds(np.array([0, 1] * 4), 2, 0, training.fingerprint)
    test = TestSet(np.arange(1, 3), training.images[:2])
    with pytest.raises(InputError) as error:
        train_in_fresh_process("partial", 0, Config(), unlabelled, test, folds, tmp_path)
    assert error.value.path == "--limit" and "fold 0 has 0 training and 0 validation faces" in str(error.value)
    assert not (tmp_path / "partial").exists()


def test_the_process_that_holds_the_data_never_loads_keras():
    check = "import sys, competition.cli, competition.cv, competition.blend; print('keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
