"""Batches of faces for Keras: a ``keras.utils.PyDataset`` that augments training batches only."""

from __future__ import annotations

import math

import keras
import numpy as np

from .augment import Augmenter


class FaceBatches(keras.utils.PyDataset):
    """Faces (N, 96, 96) uint8 and targets (N, 2K) in pixels, NaN where missing -> (x, y) batches. With
    ``labelled`` (N, K), the keypoints that are labels rather than a teacher's answers filled in: (x, y, w)
    batches, each filled coordinate weighed ``filled_weight`` against a label.

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
        labelled: np.ndarray | None = None,
        filled_weight: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.images, self.targets = images, targets
        self.labelled, self.filled_weight = labelled, filled_weight
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
        labelled = None if self.labelled is None else self.labelled[rows]
        if self.augmenter is not None:
            points = targets.reshape(len(rows), -1, 2)
            seed = int(np.random.default_rng((self.seed, self.epoch, index)).integers(2**31))
            if labelled is None:
                images, points = self.augmenter(images, points, seed)
            else:
                images, points, labelled = self.augmenter(images, points, seed, labelled)
            targets = points.reshape(len(rows), -1)
        batch = images[..., None].astype(np.float32), targets.astype(np.float32)
        if labelled is None:
            return batch
        return *batch, np.repeat(np.where(labelled, 1.0, self.filled_weight), 2, axis=1).astype(np.float32)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
