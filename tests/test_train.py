"""The fitting schedule every specialist trains with."""

import keras
import numpy as np
import pytest

from competition.config import ModelConfig, TrainConfig
from competition.dataset import FaceBatches
from competition.model import build_model, target_statistics
from competition.schema import SPECIALISTS
from competition.train import fit

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
