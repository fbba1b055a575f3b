"""The heatmap family: the soft-argmax's coordinate convention, flip equivariance, saving, its config."""

import keras
import numpy as np
import pytest

from competition.augment import mirror_points
from competition.config import load_config, resolve
from competition.errors import InputError
from competition.models import build_model, target_statistics
from competition.models.heatmap import Config as HeatmapConfig
from competition.models.layers import SoftArgmax
from competition.schema import MIRROR_AXIS, SPECIALISTS
from competition.tta import predict_pixels, predict_with_tta

SMALL = HeatmapConfig(filters=[4, 8, 8], convs_per_block=1, dropout=0.0)


def decode(heatmaps: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(SoftArgmax()(keras.ops.convert_to_tensor(heatmaps, "float32")))


# Written out from the labels' convention (the top-left pixel's centre is (1, 1)), not from the code's: a
# cell of an S x S map covers 96 / S pixels, so its centre is the mean of their 1-based positions.
CENTRES = {96: np.arange(96) + 1.0, 48: 2 * np.arange(48) + 1.5, 24: 4 * np.arange(24) + 2.5}


@pytest.mark.parametrize("side", [48, 24])
def test_a_gaussian_heatmap_decodes_to_its_sub_pixel_peak_within_005_px(side):
    rng = np.random.default_rng(side)
    peaks = rng.uniform(25, 72, size=(3, 2))  # (x, y) in label pixels, off the cell centres
    sigma = 2.5 * 96 / side  # pixels: a few cells wide
    x, y = CENTRES[side][None, :], CENTRES[side][:, None]
    heatmaps = np.stack([-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2) for px, py in peaks], axis=-1)
    decoded = decode(heatmaps[None]).reshape(-1, 2)
    np.testing.assert_allclose(decoded, peaks, atol=0.05)


def test_a_sharp_peak_on_a_cell_decodes_to_that_cells_centre():
    heatmaps = np.zeros((1, 96, 96, 2), np.float32)
    heatmaps[0, 0, 0, 0] = heatmaps[0, 40, 7, 1] = 100.0  # row, column
    np.testing.assert_allclose(decode(heatmaps), [[1.0, 1.0, 8.0, 41.0]], atol=1e-4)
    on_48 = np.zeros((1, 48, 48, 1), np.float32)
    on_48[0, 47, 0, 0] = 100.0
    np.testing.assert_allclose(decode(on_48), [[1.5, 95.5]], atol=1e-4)


def test_mirroring_heatmaps_and_swapping_pairs_gives_the_mirrored_pair_swapped_points():
    """Heatmaps of the mirrored face: each keypoint's map is its partner's, mirrored left to right."""
    specialist = SPECIALISTS["full"]
    heatmaps = np.random.default_rng(0).normal(0, 3, (4, 48, 48, 15)).astype(np.float32)
    points = decode(heatmaps).reshape(4, 15, 2)
    mirrored = decode(np.ascontiguousarray(heatmaps[:, :, ::-1][..., specialist.flip_permutation]))
    expected = mirror_points(points, specialist.flip_permutation, MIRROR_AXIS)
    np.testing.assert_allclose(mirrored.reshape(4, 15, 2), expected, atol=1e-3)
    assert np.abs(mirrored.reshape(4, 15, 2) - points).max() > 5  # the maps are far from symmetric


def symmetric_mean(targets: np.ndarray, specialist) -> np.ndarray:
    """Target means whose left/right partners are each other's mirror images (centre-line points on the axis)."""
    mean = target_statistics(targets)[0].reshape(-1, 2)
    mirrored = mirror_points(mean[None], specialist.flip_permutation, MIRROR_AXIS)[0]
    return ((mean + mirrored) / 2).ravel()


def make_mirror_symmetric(model: keras.Model, permutation: np.ndarray, rng) -> None:
    """Every spatial kernel made its own left-right mirror; the heatmap layer given random weights that are
    the same for a keypoint and its partner. Such a network maps a mirrored face to mirrored, swapped maps."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, *bias = layer.get_weights()
            if layer.name == "heatmaps":
                kernel = rng.normal(0, 200, kernel.shape)  # large: the face, not the prior, places the points
                kernel = (kernel + kernel[..., permutation]) / 2
            layer.set_weights([(kernel + kernel[:, ::-1]) / 2, *bias])


@pytest.mark.parametrize("name", ["full", "partial"])
def test_a_mirror_symmetric_heatmap_network_is_flip_equivariant_through_tta(name, training):
    """Through the real TTA path: with mirror-symmetric weights the heatmap family's network (pooling, skips,
    upsampling, prior, soft-argmax) predicts the mirrored face's points exactly mirrored and swapped, so flip
    TTA changes nothing. A grid off by half a pixel, a misaligned upsampling or a wrong prior would not."""
    specialist = SPECIALISTS[name]
    keras.utils.set_random_seed(0)  # the convolutions' initial weights: some draws leave the points unmoved
    targets = training.keypoints[:, specialist.columns]
    mean, spread = symmetric_mean(targets, specialist), target_statistics(targets)[1]
    spread = (spread.reshape(-1, 2) + spread.reshape(-1, 2)[specialist.flip_permutation]).ravel() / 2
    model = build_model(SMALL, mean, spread, 1e-3)
    make_mirror_symmetric(model, specialist.flip_permutation, np.random.default_rng(1))
    faces = training.images[:8]
    plain, with_tta = predict_with_tta(model, faces, specialist)
    np.testing.assert_allclose(with_tta, plain, atol=2e-3)
    assert plain.std(axis=0).max() > 1  # the faces move the points: the network, not only the prior, is tested
    on_mirror = predict_pixels(model, np.ascontiguousarray(faces[:, :, ::-1])).reshape(len(faces), -1, 2)
    assert np.abs(on_mirror[:, specialist.flip_permutation] - plain.reshape(on_mirror.shape)).max() > 20


def test_an_untrained_heatmap_model_predicts_the_mean_face_and_survives_save_load(tmp_path, training):
    targets = training.keypoints[:64, SPECIALISTS["full"].columns]
    mean, spread = target_statistics(targets)
    model = build_model(SMALL, mean, spread, 1e-3)
    faces = training.images[:64, ..., None].astype(np.float32)
    np.testing.assert_allclose(model.predict(faces[:4], verbose=0), np.tile(mean, (4, 1)), atol=0.05)
    model.fit(faces, targets.astype(np.float32), epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(faces, verbose=0), model.predict(faces, verbose=0), atol=1e-4)
    assert np.abs(model.predict(faces[:4], verbose=0) - mean).max() > 1e-3  # it trained, and what it learned loaded


def test_output_level_sets_the_heatmaps_side_and_the_output_is_pixels():
    mean, spread = np.full(8, 48.0), np.full(8, 5.0)
    for level, side in ((0, 48), (1, 24), (2, 12)):
        model = build_model(HeatmapConfig(filters=[4, 8, 8], convs_per_block=1, output_level=level), mean, spread, 1e-3)
        assert model.get_layer("heatmaps").output.shape[1:] == (side, side, 4)
        assert model.input_shape == (None, 96, 96, 1) and model.output_shape == (None, 8)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"filters": [8] * 6}, "cannot be halved 5 times"),
        ({"filters": [8, 16], "output_level": 2}, "'specialists.full.model.output_level' must be below the 2 levels"),
        ({"dense_units": 64}, "unknown key 'specialists.full.model.dense_units'"),
        ({"beta": 0.0}, "'specialists.full.model.beta' must be within"),
    ],
)
def test_bad_heatmap_settings_are_refused_naming_the_key(model, message):
    raw = {"specialists": {"full": {"model": {"family": "heatmap", **model}}, "partial": {"enabled": False}}}
    with pytest.raises(InputError, match=message):
        resolve(raw, "heatmap.toml")


def test_the_heatmap_config_picks_the_family_for_every_specialist():
    config = load_config("heatmap")
    assert {config.specialist(name).model.family for name in SPECIALISTS} == {"heatmap"}
    assert isinstance(config.specialist("full").model, HeatmapConfig)
