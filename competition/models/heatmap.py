"""The heatmap family: a small U-Net predicts one heatmap per keypoint; a soft-argmax decodes each to pixels.

The encoder halves the face once per level (``filters``, one width each); the decoder climbs back to
``output_level``, each step a 1x1 convolution at the coarser level (cheap), a nearest-neighbour
upsampling and the skip connection added, then a conv block. A 1x1 convolution gives one logit map per
keypoint, a learned prior (``MeanFacePrior``) is added, and ``SoftArgmax`` turns each map into the
expected x and y of its cells' centres, in the labels' pixels. The output is pixels in the specialist's
column order, so the loss, metric, flip TTA, `fkp show` and `fkp blend` treat it as they treat the
regression family's. Every layer commutes with a left-right mirror of its input (even sides, same
padding, nearest upsampling), so with mirror-symmetric weights the network is exactly flip-equivariant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..ranges import setting
from ..schema import IMAGE_SIZE
from .base import ModelConfig


@dataclass
class Config(ModelConfig):
    family: str = "heatmap"
    filters: list[int] = setting([32, 64, 128], low=1, high=4096, nonempty=True)  # one encoder level each
    convs_per_block: int = setting(2, low=1, high=16)
    kernel_size: int = setting(3, low=1, high=IMAGE_SIZE)
    batch_norm: bool = True
    dropout: float = setting(0.1, low=0, below=1)  # on the deepest level's features
    # average-pool the 96x96 face by this factor first (2: 48x48, a quarter of the FLOPs)
    input_downsample: int = setting(2, divides=IMAGE_SIZE)
    # the level the heatmaps come out at: 0 the (downsampled) input's side, 1 half of it, ...
    output_level: int = setting(0, low=0, high=16)
    beta: float = setting(1.0, low=1e-3, high=1e3)  # the soft-argmax's inverse temperature

    def check(self, source: str, key: str) -> None:
        """Every level must halve the face exactly (so skips line up and mirrors commute), and the heatmaps
        come out at one of the levels."""
        side = IMAGE_SIZE // self.input_downsample
        levels = len(self.filters)
        if side % 2 ** (levels - 1):
            raise InputError(
                source,
                f"keys '{key}.filters' ({levels} levels) and '{key}.input_downsample' "
                f"(a {side}x{side} face) do not fit: each level but the first halves the "
                f"face exactly, and {side} cannot be halved {levels - 1} times",
            )
        if self.output_level >= levels:
            raise InputError(
                source,
                f"key '{key}.output_level' must be below the {levels} levels of "
                f"'{key}.filters', got {self.output_level}",
            )


def loss():
    """Mean squared error in pixels over the labelled coordinates (the soft-argmax's output)."""
    from .losses import MaskedMeanSquaredError

    return MaskedMeanSquaredError()


def build(config: Config, target_mean: np.ndarray, target_spread: np.ndarray, name: str = "specialist"):
    """U-Net encoder-decoder, one logit map per keypoint plus its mean-face prior, soft-argmax to pixels."""
    import keras
    from keras import layers

    from .layers import MeanFacePrior, SoftArgmax, conv_block

    block = dict(convs=config.convs_per_block, kernel_size=config.kernel_size, batch_norm=config.batch_norm)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    x = layers.Rescaling(1 / 255)(inputs)
    if config.input_downsample > 1:
        x = layers.AveragePooling2D(config.input_downsample, name="downsample")(x)
    skips = []
    for level, filters in enumerate(config.filters):
        if level:
            x = layers.MaxPooling2D(name=f"down{level}_pool")(x)
        x = conv_block(x, filters, prefix=f"down{level}", **block)
        skips.append(x)
    x = layers.Dropout(config.dropout)(x)
    for level in range(len(config.filters) - 2, config.output_level - 1, -1):
        x = layers.Conv2D(config.filters[level], 1, name=f"up{level}_reduce")(x)
        x = layers.UpSampling2D(name=f"up{level}_upsample")(x)
        x = layers.Add(name=f"up{level}_skip")([x, skips[level]])
        x = conv_block(x, config.filters[level], prefix=f"up{level}", **block)
    heatmaps = layers.Conv2D(len(target_mean) // 2, 1, kernel_initializer="zeros", name="heatmaps")(x)
    heatmaps = MeanFacePrior(target_mean, target_spread, name="prior")(heatmaps)
    keypoints = SoftArgmax(config.beta, name="keypoints")(heatmaps)
    return keras.Model(inputs, keypoints, name=name)
