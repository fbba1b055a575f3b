import keras
import numpy as np

from competition.evaluate import rmse
from competition.models import build_model, optimizer, target_statistics
from competition.models.losses import MaskedMeanSquaredError, PixelRMSE
from competition.models.regression import Config as RegressionConfig

SMALL = RegressionConfig(filters=[4, 8], convs_per_block=1, dense_units=8, dropout=0.0)


def test_masked_loss_ignores_missing_labels():
    y_true = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, 0.0]], np.float32)
    y_pred = np.array([[2.0, 100.0, 1.0], [50.0, -7.0, 3.0]], np.float32)
    # labelled errors: 1, -2, 3 -> (1 + 4 + 9) / 3
    loss = MaskedMeanSquaredError()(y_true, y_pred)
    assert np.isclose(float(keras.ops.convert_to_numpy(loss)), 14 / 3)


def test_masked_loss_weighs_each_coordinate_by_its_sample_weight():
    y_true = np.array([[1.0, np.nan, 3.0], [5.0, np.nan, 0.0]], np.float32)
    y_pred = np.array([[2.0, 100.0, 1.0], [1.0, -7.0, 3.0]], np.float32)
    weight = np.array([[1.0, 1.0, 0.5], [0.0, 1.0, 1.0]], np.float32)
    # labelled errors 1, -2 (weight 0.5), -4 (weight 0), 3 over four labelled coordinates
    loss = MaskedMeanSquaredError()(y_true, y_pred, sample_weight=weight)
    assert np.isclose(float(keras.ops.convert_to_numpy(loss)), (1 + 0.5 * 4 + 0 + 9) / 4)


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
    model = build_model(
        RegressionConfig(filters=[4, 8], convs_per_block=1, dense_units=8, dropout=0.0, input_downsample=2),
        mean,
        spread,
        1e-3,
    )
    assert tuple(model.get_layer("block0_conv0").input.shape) == (None, 48, 48, 1)
    assert model.input_shape == (None, 96, 96, 1) and model.output_shape == (None, 2)
