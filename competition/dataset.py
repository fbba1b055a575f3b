"""Batches of faces for Keras: a ``keras.utils.PyDataset`` that augments training batches only."""

from __future__ import annotations

import math

import keras
import numpy as np

from .augment import Augmenter


class FaceBatches(keras.utils.PyDataset):
    """Faces (N, 96, 96) uint8 and targets (N, 2K) in pixels, NaN where missing -> (x, y) batches.

    Shuffling and augmentation draw from seeds made of (seed, epoch, batch index), so batches are
    the same whatever the number of workers and the order they are asked for.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
        *,
        augmenter: Augmenter | None = None,
        shuffle: bool = False,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.images, self.targets = images, targets
        self.batch_size = batch_size
        self.augmenter, self.shuffle, self.seed = augmenter, shuffle, seed
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images, targets = self.images[rows], self.targets[rows]
        if self.augmenter is not None:
            points = targets.reshape(len(rows), -1, 2)
            seed = int(np.random.default_rng((self.seed, self.epoch, index)).integers(2**31))
            images, points = self.augmenter(images, points, seed)
            targets = points.reshape(len(rows), -1)
        return images[..., None].astype(np.float32), targets.astype(np.float32)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
