from dataclasses import replace

import keras
import numpy as np
import pandas as pd

from competition.evaluate import leaderboard_mix, rmse
from competition.models import build_model, optimizer, target_statistics
from competition.models.losses import MaskedMeanSquaredError, PixelRMSE
from competition.models.regression import Config as RegressionConfig
from competition.schema import COORDINATES, SPECIALISTS

SMALL = RegressionConfig(filters=[4, 8], convs_per_block=1, dense_units=8, dropout=0.0)


def test_masked_loss_ignores_missing_labels():
    y_true = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, 0.0]], np.float32)
    y_pred = np.array([[2.0, 100.0, 1.0], [50.0, -7.0, 3.0]], np.float32)
    # labelled errors: 1, -2, 3 -> (1 + 4 + 9) / 3
    loss = MaskedMeanSquaredError()(y_true, y_pred)
    assert np.isclose(float(keras.ops.convert_to_numpy(loss)), 14 / 3)


def test_pixel_rmse_pools_over_batches():
    metric = PixelRMSE()
    metric.update_state(np.array([[1.0, np.nan]], np.float32), np.array([[4.0, 0.0]], np.float32))
    metric.update_state(np.array([[0.0, 0.0]], np.float32), np.array([[0.0, 4.0]], np.float32))
    # squared errors 9, 0, 16 over three labelled coordinates
    assert np.isclose(float(keras.ops.convert_to_numpy(metric.result())), np.sqrt(25 / 3))


def test_rmse_hand_computed_case():
    truth = np.array([[10.0, np.nan], [20.0, 30.0]])
    prediction = np.array([[13.0, 50.0], [16.0, 30.0]])
    assert np.isclose(rmse(truth, prediction), np.sqrt((9 + 16 + 0) / 3))


def test_leaderboard_mix_takes_the_partial_specialists_eight_coordinates_on_shared_rows():
    """The default preference: the smallest trained specialist answers a coordinate."""
    coordinates = list(SPECIALISTS["full"].coordinates)
    full = pd.DataFrame(np.zeros((3, 30)), index=[4, 5, 6], columns=coordinates)
    partial = pd.DataFrame(np.ones((2, 8)), index=[5, 6], columns=list(SPECIALISTS["partial"].coordinates))
    mixed = leaderboard_mix({"full": full, "partial": partial})
    assert mixed.index.tolist() == [5, 6] and mixed.columns.tolist() == coordinates
    assert mixed.to_numpy().sum() == 16
    assert (mixed.to_numpy()[:, [0, 1, 2, 3, 20, 21, 28, 29]] == 1).all()


def test_weight_decay_shrinks_kernels_but_not_biases_or_batch_norm_scales():
    """A step with zero gradients moves nothing without decay; with it, each kernel shrinks by lr * decay."""
    dense, norm = keras.layers.Dense(3), keras.layers.BatchNormalization()
    norm(dense(np.ones((2, 4), np.float32)))
    variables = dense.trainable_variables + norm.trainable_variables  # kernel, bias, gamma, beta
    for weight_decay, kernel_after in ((0.0, 2.0), (0.1, 2.0 * (1 - 0.5 * 0.1))):
        for variable in variables:
            variable.assign(np.full(variable.shape, 2.0, np.float32))
        step = optimizer(0.5, weight_decay)
        step.apply_gradients([(np.zeros(variable.shape, np.float32), variable) for variable in variables])
        after = [keras.ops.convert_to_numpy(variable) for variable in variables]
        assert np.allclose(after[0], kernel_after) and all(np.allclose(value, 2.0) for value in after[1:])


def test_untrained_model_predicts_the_mean_face_and_survives_save_load(tmp_path):
    targets = np.array([[30.0, 40.0], [34.0, np.nan], [32.0, 44.0]])
    mean, spread = target_statistics(targets)
    np.testing.assert_allclose(mean, [32.0, 42.0])
    model = build_model(SMALL, mean, spread, 1e-3)
    faces = np.random.default_rng(0).integers(0, 255, (3, 96, 96, 1)).astype(np.float32)
    predicted = model.predict(faces, verbose=0)
    np.testing.assert_allclose(predicted, np.tile(mean, (3, 1)), atol=1e-5)
    model.fit(faces, targets.astype(np.float32), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(faces, verbose=0), model.predict(faces, verbose=0), atol=1e-5)


def test_input_downsample_feeds_the_first_conv_a_smaller_face_and_still_maps_raw_faces_to_pixels():
    mean, spread = target_statistics(np.array([[30.0, 40.0], [34.0, 44.0]]))
    model = build_model(RegressionConfig(filters=[4, 8], convs_per_block=1, dense_units=8, dropout=0.0,
                                         input_downsample=2), mean, spread, 1e-3)
    assert tuple(model.get_layer("block0_conv0").input.shape) == (None, 48, 48, 1)
    assert model.input_shape == (None, 96, 96, 1) and model.output_shape == (None, 2)


def test_strided_blocks_halve_the_face_in_their_first_conv_instead_of_a_pooling_layer():
    mean, spread = target_statistics(np.array([[30.0, 40.0], [34.0, 44.0]]))
    config = RegressionConfig(filters=[4, 8, 8], convs_per_block=2, dense_units=8, dropout=0.0, strided_blocks=2)
    model = build_model(config, mean, spread, 1e-3)
    names = {layer.name for layer in model.layers}
    assert "block0_pool" not in names and "block1_pool" not in names and "block2_pool" in names
    assert tuple(model.get_layer("block0_conv0").output.shape) == (None, 48, 48, 4)
    assert tuple(model.get_layer("block0_conv1").output.shape) == (None, 48, 48, 4)
    assert tuple(model.get_layer("block1_conv0").output.shape) == (None, 24, 24, 8)
    pooled = build_model(replace(config, strided_blocks=0), mean, spread, 1e-3)
    assert tuple(pooled.get_layer("block0_conv0").output.shape) == (None, 96, 96, 4)
    # the same weights either way: a stride changes where the kernel is applied, not what it holds
    assert model.count_params() == pooled.count_params()
    assert model.output_shape == pooled.output_shape == (None, 2)


def test_leaderboard_mix_follows_the_configs_preference():
    coordinates = list(SPECIALISTS["full"].coordinates)
    full = pd.DataFrame(np.zeros((2, 30)), index=[5, 6], columns=coordinates)
    partial = pd.DataFrame(np.ones((2, 8)), index=[5, 6], columns=list(SPECIALISTS["partial"].coordinates))
    assert leaderboard_mix({"full": full, "partial": partial}, prefer=["full", "partial"]).to_numpy().sum() == 0


def test_the_per_coordinate_loss_weighs_each_coordinate_hand_computed():
    from competition.models.losses import CoordinateMaskedMeanSquaredError

    y_true = np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)
    weights = np.array([[1.0, 1.0], [0.5, 1.0]], np.float32)
    loss = CoordinateMaskedMeanSquaredError()(y_true, np.zeros((2, 2), np.float32), sample_weight=weights)
    assert np.isclose(float(loss), (1 + 0.5 * 9 + 16) / 3)  # sum(w * e^2) over the 3 labelled coordinates
    unweighted = CoordinateMaskedMeanSquaredError()(y_true, np.zeros((2, 2), np.float32))
    assert np.isclose(float(unweighted), float(MaskedMeanSquaredError()(y_true, np.zeros((2, 2), np.float32))))


def _two_specialist_oof(partial_offset: dict[tuple[str, int], float]):
    """Four faces per (style, fold), folds 0 and 1; truth 40 everywhere it is labelled. The full network is
    1 px off on every coordinate; the partial network ``partial_offset[(style, fold)]`` px off on its 8."""
    from competition.config import InferenceConfig
    from competition.data import TrainingSet

    partial_columns = SPECIALISTS["partial"].columns
    cells = [(style, fold) for style in ("full", "partial") for fold in (0, 1)]
    truth = np.full((4 * len(cells), 30), np.nan, np.float32)
    fold = np.repeat([fold for _, fold in cells], 4)
    offsets = np.repeat([partial_offset[cell] for cell in cells], 4)
    for i, (style, _) in enumerate(cells):
        if style == "full":
            truth[4 * i : 4 * i + 4] = 40.0
        else:
            truth[4 * i : 4 * i + 4, partial_columns] = 40.0
    training = TrainingSet(np.zeros((len(truth), 96, 96), np.uint8), truth, "hand-made")
    rows = np.arange(len(truth))
    full = pd.DataFrame(np.full((len(rows), 30), 41.0), index=rows, columns=list(COORDINATES)).assign(fold=fold)
    partial = pd.DataFrame(40.0 + offsets[:, None] * np.ones((1, 8)), index=rows,
                           columns=list(SPECIALISTS["partial"].coordinates)).assign(fold=fold)
    by_style = InferenceConfig(prefer=["partial", "full"], prefer_by_style=True)
    return {"full": full, "partial": partial}, training, by_style


def test_the_specialist_that_answers_a_coordinate_is_chosen_per_style_on_out_of_fold_scores():
    """Partial-style faces: the partial network is 0.5 px off, the full one 1 px: partial answers their 8.
    Full-style faces: the partial network is 2 px off: the full network answers all 30 there, against the
    fixed smallest-first rule."""
    from competition.evaluate import mix_oof, style_choice

    offsets = {("full", 0): 2.0, ("full", 1): 2.0, ("partial", 0): 0.5, ("partial", 1): 0.5}
    frames, training, by_style = _two_specialist_oof(offsets)
    choice = style_choice(frames, training.keypoints, training.style, by_style.prefer)
    assert set(choice["full"].values()) == {"full"}
    assert {choice["partial"][c] for c in SPECIALISTS["partial"].coordinates} == {"partial"}
    mixed = mix_oof(frames, by_style, training)
    truth = training.keypoints
    # 8 full-style faces 1 px off on 30 coordinates, 8 partial-style 0.5 px off on 8: (8*30*1 + 8*8*0.25) / (8*38)
    assert np.isclose(rmse(truth, mixed[list(COORDINATES)].to_numpy()), np.sqrt((240 + 16) / 304))
    fixed = mix_oof(frames, replace(by_style, prefer_by_style=False), training)
    # the fixed rule takes the partial network's 2 px on full-style faces' 8: (8*22*1 + 8*8*4 + 16) / 304
    assert np.isclose(rmse(truth, fixed[list(COORDINATES)].to_numpy()), np.sqrt((176 + 256 + 16) / 304))


def test_each_folds_choice_is_measured_on_the_other_folds_only():
    """On full-style faces the partial network wins in fold 0 (0.5 px against 1) and loses in fold 1 (3 px):
    fold 0's rows take the choice made on fold 1 (full), fold 1's the choice made on fold 0 (partial)."""
    from competition.evaluate import mix_oof

    offsets = {("full", 0): 0.5, ("full", 1): 3.0, ("partial", 0): 0.5, ("partial", 1): 0.5}
    frames, training, by_style = _two_specialist_oof(offsets)
    mixed = mix_oof(frames, by_style, training)
    nose = "nose_tip_x"
    full_style = training.style == "full"
    assert (mixed.loc[full_style & (mixed["fold"] == 0).to_numpy(), nose] == 41.0).all()  # full's answer
    assert (mixed.loc[full_style & (mixed["fold"] == 1).to_numpy(), nose] == 43.0).all()  # partial's answer

