"""The NumPy 2 shim: imgaug imports and its augmenters that used removed aliases run."""

import numpy as np

from competition.imgaug_compat import iaa, imgaug


def test_imgaug_imports_on_this_numpy():
    assert imgaug.__version__ == "0.4.0"
    assert hasattr(np, "sctypes")


def test_augmenters_using_removed_numpy_aliases_run():
    images = np.random.default_rng(0).integers(0, 255, (3, 16, 16), dtype=np.uint8)
    # FrequencyNoise samples through iap.Power, which casts to np.complex: gone in NumPy 2.
    out = iaa.BlendAlphaFrequencyNoise(exponent=-2, foreground=iaa.Multiply(0.5), seed=1)(images=images)
    assert np.asarray(out).shape == images.shape
    assert not np.array_equal(out, images)
