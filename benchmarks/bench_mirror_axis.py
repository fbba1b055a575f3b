"""Which mirror axis do the labels follow? Measures it instead of guessing.

Trains the partial specialist (smoke network) with flip augmentation about several axes
(x -> A - x) on the same split and seed, and prints each one's best validation RMSE and the mean
x-bias of its predictions. Flipping about the wrong axis teaches shifted labels on half the
faces, so the validation x-bias moves by about (A - A_true) / 2 and the RMSE worsens.
The result is recorded as ``first_pixel_centre`` in competition/keypoints.toml.

    python benchmarks/bench_mirror_axis.py --data ../shared/fkp-data --epochs 14
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from competition import augment, data
from competition.augment import Augmenter
from competition.config import load_config
from competition.dataset import FaceBatches
from competition.models import build_model, target_statistics
from competition.schema import IMAGE_SIZE, SPECIALISTS
from competition.tta import predict_pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "fkp-data")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--axes", type=float, nargs="+", default=[95, 96, 97, 98])
    args = parser.parse_args()

    training = data.load_training(args.data if args.data.exists() else data.bundled_sample())
    specialist = SPECIALISTS["partial"]
    settings = load_config("smoke", ["augment.flip=0.5", f"train.epochs={args.epochs}"]).specialist("partial")
    targets = training.keypoints[:, specialist.columns]
    order = np.random.default_rng(0).permutation(len(training))
    cut = int(0.75 * len(order))
    train_rows, val_rows = order[:cut], order[cut:]
    truth = targets[val_rows].reshape(-1, 4, 2)
    print(f"{len(train_rows)} training / {len(val_rows)} validation faces, {args.epochs} epochs, flip p=0.5")
    print("axis  best val RMSE  mean x-bias (px)")
    for axis in args.axes:
        # imgaug mirrors about IMAGE_SIZE in its own coordinates (pixel centres at i + 0.5).
        augment._IMGAUG_OFFSET = (IMAGE_SIZE - axis) / 2
        keras.utils.set_random_seed(1)
        batches = FaceBatches(
            training.images[train_rows],
            targets[train_rows],
            32,
            augmenter=Augmenter(settings.augment, specialist.flip_permutation),
            shuffle=True,
            seed=1,
        )
        model = build_model(settings.model, *target_statistics(targets[train_rows]), 2e-3)
        history = model.fit(
            batches,
            validation_data=FaceBatches(training.images[val_rows], targets[val_rows], 256),
            epochs=args.epochs,
            verbose=0,
        )
        predicted = predict_pixels(model, training.images[val_rows]).reshape(-1, 4, 2)
        bias = np.nanmean(predicted[..., 0] - truth[..., 0])
        print(f"{axis:4.0f}  {min(history.history['val_rmse']):13.3f}  {bias:+16.2f}", flush=True)


if __name__ == "__main__":
    main()
