"""The second stage (``competition.refine``) and its out-of-fold use in ``evaluate.mix_oof``."""

from dataclasses import replace

import numpy as np
import pandas as pd

from competition.config import InferenceConfig
from competition.data import TrainingSet
from competition.evaluate import mix_oof, rmse
from competition.refine import fit_refinement
from competition.schema import COORDINATES, SPECIALISTS


def test_offsets_are_each_coordinates_mean_error_on_the_faces_labelled_with_it():
    """Hand-computed: coordinate 0 is off by +1, -1 and +2 on three faces; coordinate 1 is labelled on one
    face only (+1); the others on none (left alone)."""
    truth = np.full((3, 30), np.nan)
    truth[:, 0] = [10.0, 12.0, 20.0]
    truth[1, 1] = 5.0
    predicted = np.full((3, 30), 30.0)
    predicted[:, 0] = [9.0, 13.0, 18.0]
    predicted[1, 1] = 4.0
    refinement = fit_refinement(truth, predicted, "offsets", alpha=20.0)
    assert np.allclose(refinement.intercept[:2], [2 / 3, 1.0]) and (refinement.intercept[2:] == 0).all()
    assert (refinement.weights == 0).all()
    refined = refinement.apply(predicted)
    assert np.allclose(refined[:, 0], [9 + 2 / 3, 13 + 2 / 3, 18 + 2 / 3]) and np.allclose(refined[:, 2:], 30.0)


def test_linear_undoes_a_linear_distortion_of_the_keypoints_and_its_dense_form_is_the_same_map():
    """Predictions that are a linear map of the truth (each coordinate mixed with the others, scaled, moved),
    on faces with labels missing at random: unpenalised, the refinement recovers the truth exactly; its
    matrix-and-bias form (what `fkp export` puts in a Dense layer) maps keypoints the same."""
    rng = np.random.default_rng(0)
    truth = rng.normal(48, 8, (400, 30))
    mixing = np.eye(30) * 0.9 + rng.normal(0, 0.02, (30, 30))
    predicted = truth @ mixing + rng.normal(0, 1, 30)
    labels = np.where(rng.random(truth.shape) < 0.3, np.nan, truth)
    refinement = fit_refinement(labels, predicted, "linear", alpha=0.0)
    assert rmse(truth, predicted) > 1.0
    np.testing.assert_allclose(refinement.apply(predicted), truth, atol=1e-6)
    kernel, bias = refinement.as_affine()
    np.testing.assert_allclose(predicted @ kernel + bias, refinement.apply(predicted), atol=1e-9)
    shrunk = fit_refinement(labels, predicted, "linear", alpha=1e6)  # penalised hard: the offsets, nearly
    offsets = fit_refinement(labels, predicted, "offsets", alpha=0.0)
    np.testing.assert_allclose(shrunk.apply(predicted), offsets.apply(predicted), atol=1e-2)


def _biased_oof(bias: dict[tuple[str, int], float]):
    """One network (full) predicting all 30 coordinates; four faces per (style, fold), folds 0 and 1; truth 40
    where labelled; every prediction of a (style, fold) face ``bias[(style, fold)]`` px above it."""
    cells = [(style, fold) for style in ("full", "partial") for fold in (0, 1)]
    truth = np.full((4 * len(cells), 30), np.nan, np.float32)
    for i, (style, _) in enumerate(cells):
        truth[4 * i : 4 * i + 4, slice(None) if style == "full" else SPECIALISTS["partial"].columns] = 40.0
    fold = np.repeat([fold for _, fold in cells], 4)
    predicted = 40.0 + np.repeat([bias[cell] for cell in cells], 4)[:, None] * np.ones((1, 30))
    frame = pd.DataFrame(predicted, index=np.arange(len(truth)), columns=list(COORDINATES)).assign(fold=fold)
    one_network = InferenceConfig(prefer=["partial", "full"])
    return {"full": frame}, TrainingSet(np.zeros((len(truth), 96, 96), np.uint8), truth, "hand-made"), one_network


def test_each_folds_refinement_is_fitted_on_the_other_folds_only():
    """Fold 0's faces are 1 px high, fold 1's 3 px: fold 0 takes fold 1's offset (-3) and ends 2 px low, fold 1
    takes fold 0's (-1) and ends 2 px high. Offsets fitted on all faces (-2) would leave every face 1 px off."""
    frames, training, inference = _biased_oof({("full", 0): 1.0, ("full", 1): 3.0,
                                               ("partial", 0): 1.0, ("partial", 1): 3.0})
    mixed = mix_oof(frames, replace(inference, refine="offsets"), training)
    error = mixed[list(COORDINATES)].to_numpy() - training.keypoints
    fold0 = (mixed["fold"] == 0).to_numpy()
    assert np.allclose(error[fold0][~np.isnan(error[fold0])], -2.0)
    assert np.allclose(error[~fold0][~np.isnan(error[~fold0])], 2.0)
    untouched = mix_oof(frames, inference, training)
    np.testing.assert_array_equal(untouched[list(COORDINATES)].to_numpy(), frames["full"][list(COORDINATES)].to_numpy())
