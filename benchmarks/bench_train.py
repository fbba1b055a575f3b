"""Training throughput: fkp's training path against plain `model.fit`, per model family.

    python benchmarks/bench_train.py [--data DIR] [--config cpu-wide --config heatmap] [--steps 16] [--epochs 2]
                                     [--rounds 5]

For each config (default: cpu-wide, the regression family, and heatmap, the heatmap family, on the same
budget), one process trains its full-label network (fresh weights each way) for --steps batches in
--epochs epochs, two ways, alternated for --rounds rounds:
  (a) the ceiling: plain `model.fit` on preloaded float32 arrays, plain MSE (missing targets filled
      with the coordinate's mean), no augmentation, no validation, no callbacks;
  (b) fkp's path, built as `train.prepare_fold` builds it: `FaceBatches` (a Keras PyDataset, the
      config's workers) with the imgaug `Augmenter`, the masked loss and pixel-RMSE metric,
      validation every epoch, and the early-stopping, learning-rate and log callbacks.
Each way first runs 2 untimed warm-up steps (graph tracing). (b)'s validation passes are timed
and taken out of its training time; its faces/s with them is printed too.

The headline ratio b/a divides the two ways' faces/s from their median step time, each way's best
round: a burst of other work lengthens a few steps, which moves a whole fit's time (on the same code
and a quiet machine its ratio read 0.74 in one run and 1.36 in the next) but not the median step, and
other work only ever slows a round, so the best round is the one nearest the machine's own speed. The
headline is printed after 1, 2, ... rounds, so one sees how many rounds it takes to settle; each
round's own ratios, by median step and by whole fit, show the spread. Goal (issue 5): b/a >= 0.90.

FLOPs per face: see `common.flops_per_face`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import keras
import numpy as np
from common import default_data_dir, flops_per_face, plain_model, verdict

from competition import data
from competition.augment import Augmenter
from competition.config import load_config
from competition.dataset import FaceBatches
from competition.models import build_model, target_statistics
from competition.schema import SPECIALISTS
from competition.train import _EpochLog, labelled_rows
from competition.tta import PREDICT_BATCH

RATIO_GOAL = 0.90
WARM_UP_STEPS = 2
VALIDATION_FACES = 256  # (b) validates on these each epoch (a quarter of the faces at most)


class Clock(keras.callbacks.Callback):
    """Step times, and the seconds fit spends validating."""

    def __init__(self):
        super().__init__()
        self.steps: list[float] = []
        self.validating = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.step_started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(time.perf_counter() - self.step_started)

    def on_test_begin(self, logs=None):
        self.test_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validating += time.perf_counter() - self.test_started


def timed_fit(model: keras.Model, fit_args: dict, faces: int, batch: int) -> dict:
    clock = Clock()
    fit_args = {**fit_args, "callbacks": [*fit_args.get("callbacks", []), clock]}
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(verbose=0, **fit_args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    training = wall - clock.validating
    return {
        "faces/s": faces / training,
        "faces/s with validation": faces / wall,
        "faces/s by median step": batch / statistics.median(clock.steps),
        "seconds": training,
        "validating": clock.validating,
        "cpu": cpu,
        "steps": len(clock.steps),
    }


def augmentation_rate(batches: FaceBatches, count: int) -> float:
    """Faces/s one thread makes augmented batches at."""
    started = time.perf_counter()
    for index in range(count):
        batches[index % len(batches)]
    return count * batches.batch_size / (time.perf_counter() - started)


def measure(config_name: str, args, training) -> dict:
    """Both ways, alternated for ``args.rounds`` rounds, on one config's full-label network."""
    config = load_config(config_name, args.overrides)
    specialist = SPECIALISTS["full"]
    settings = config.specialist("full")
    batch, steps_per_epoch = settings.train.batch_size, args.steps // args.epochs
    rows = labelled_rows(training.keypoints, np.arange(len(training)), specialist)
    val_rows, pool = np.split(rows, [min(VALIDATION_FACES, len(rows) // 4)])
    train_rows = np.resize(pool, steps_per_epoch * batch)  # faces repeat when there are too few (the sample)
    warm_rows = np.resize(pool[::-1], WARM_UP_STEPS * batch)
    targets = training.keypoints[:, specialist.columns]
    mean, spread = target_statistics(targets[train_rows])
    faces = args.steps * batch
    print(
        f"\nconfig {config.name}: {settings.model.family} family, full-label network, batch {batch}, {args.steps} "
        f"steps in {args.epochs} epochs ({faces} faces) each way, workers {settings.train.workers}, "
        f"backend {keras.backend.backend()}; {args.rounds} alternating rounds"
    )

    # (a) the ceiling
    keras.utils.set_random_seed(0)
    plain = plain_model(settings, mean, spread)
    x = training.images[..., None].astype(np.float32)
    y = np.where(np.isnan(targets), mean, targets).astype(np.float32)
    plain.fit(x[warm_rows], y[warm_rows], batch_size=batch, epochs=1, verbose=0)

    # (b) fkp's path, as train.prepare_fold builds it
    keras.utils.set_random_seed(0)

    def batches(chosen: np.ndarray) -> FaceBatches:
        return FaceBatches(
            training.images[chosen],
            targets[chosen],
            batch,
            augmenter=Augmenter(settings.augment, specialist.flip_permutation),
            shuffle=True,
            seed=0,
            workers=settings.train.workers,
            use_multiprocessing=False,
        )

    val_batches = FaceBatches(training.images[val_rows], targets[val_rows], PREDICT_BATCH)
    model = build_model(settings.model, mean, spread, settings.train.learning_rate)
    model.fit(batches(warm_rows), validation_data=val_batches, epochs=1, verbose=0)

    def callbacks() -> list[keras.callbacks.Callback]:
        return [
            keras.callbacks.EarlyStopping(
                monitor="val_rmse", mode="min", patience=settings.train.patience, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_rmse",
                mode="min",
                factor=0.5,
                patience=settings.train.lr_patience,
                min_lr=settings.train.min_learning_rate,
            ),
            _EpochLog("  (b)", args.epochs),
        ]

    rounds = {"a": [], "b": []}
    for _ in range(args.rounds):  # alternated, so a burst of other work hits both ways alike
        rounds["a"].append(
            timed_fit(
                plain,
                {"x": x[train_rows], "y": y[train_rows], "batch_size": batch, "epochs": args.epochs, "shuffle": True},
                faces,
                batch,
            )
        )
        rounds["b"].append(
            timed_fit(
                model,
                {
                    "x": batches(train_rows),
                    "validation_data": val_batches,
                    "epochs": args.epochs,
                    "callbacks": callbacks(),
                },
                faces,
                batch,
            )
        )
    by_step = [b["faces/s by median step"] / a["faces/s by median step"] for a, b in zip(*rounds.values())]
    whole = [b["faces/s"] / a["faces/s"] for a, b in zip(*rounds.values())]
    a_steps, b_steps = ([r["faces/s by median step"] for r in results] for results in rounds.values())
    settling = [max(b_steps[:count]) / max(a_steps[:count]) for count in range(1, args.rounds + 1)]
    a, b = (max(results, key=lambda r: r["faces/s by median step"]) for results in rounds.values())
    best_whole = max(r["faces/s"] for r in rounds["b"]) / max(r["faces/s"] for r in rounds["a"])
    augmenting = augmentation_rate(batches(train_rows), 8)
    forward, backward = flops_per_face(model)

    print(
        f"{'best round':<34} {'by median step':>15} {'faces/s':>9} {'with validation':>16} {'train s':>8} {'cpu s':>7}"
    )
    for name, result in (("(a) plain fit, preloaded arrays", a), ("(b) fkp: PyDataset+imgaug+masked", b)):
        print(
            f"{name:<34} {result['faces/s by median step']:15.1f} {result['faces/s']:9.1f} "
            f"{result['faces/s with validation']:16.1f} {result['seconds']:8.1f} {result['cpu']:7.1f}"
        )
    print(
        "each round alone, ratio b/a by median step: "
        + ", ".join(f"{r:.3f}" for r in by_step)
        + "; by whole fit: "
        + ", ".join(f"{r:.3f}" for r in whole)
    )
    print(
        "ratio b/a by median step, best round of each, after 1, 2, ... rounds: "
        + ", ".join(f"{r:.3f}" for r in settling)
    )
    ratio = settling[-1]
    print(
        f"ratio b/a by median step {ratio:.3f} (best of {args.rounds} rounds each way; by whole fit "
        f"{best_whole:.3f}); goal >= {RATIO_GOAL}: {verdict(ratio >= RATIO_GOAL)}"
    )
    print(
        f"FLOPs per face: forward {forward / 1e9:.3f} G, backward {backward / 1e9:.3f} G, "
        f"forward+backward {(forward + backward) / 1e9:.3f} G"
    )
    for name, result in (("(a)", a), ("(b)", b)):
        print(
            f"achieved {name}: {result['faces/s by median step'] * (forward + backward) / 1e9:.1f} GFLOP/s "
            "(by median step)"
        )
    print(
        f"augmentation alone (one thread, FaceBatches[i]): {augmenting:.0f} faces/s, "
        f"{augmenting / a['faces/s by median step']:.1f}x what the model takes in (a)"
    )
    return {
        "config": config.name,
        "family": settings.model.family,
        "flops": forward + backward,
        "b faces/s": b["faces/s by median step"],
        "a faces/s": a["faces/s by median step"],
        "ratio": ratio,
        "whole": best_whole,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="competition folder [default: ../shared/fkp-data, else the bundled sample]",
    )
    parser.add_argument(
        "--config",
        dest="configs",
        action="append",
        default=None,
        help="config name or TOML path, repeatable [default: cpu-wide and heatmap]",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--steps", type=int, default=16, help="timed training steps each way and round")
    parser.add_argument("--epochs", type=int, default=2, help="epochs the steps are spread over")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of (a) and (b); the best is used")
    args = parser.parse_args()
    if args.steps % args.epochs:
        parser.error("--steps must be a multiple of --epochs")

    training = data.load_training(args.data or default_data_dir())
    results = [measure(name, args, training) for name in args.configs or ["cpu-wide", "heatmap"]]
    print(
        f"\n{'config':<12} {'family':<11} {'ratio b/a':>9} {'(whole fit)':>11} {'fkp faces/s':>11} "
        f"{'plain faces/s':>13} {'GFLOP/face':>10}"
    )
    for r in results:
        print(
            f"{r['config']:<12} {r['family']:<11} {r['ratio']:9.3f} {r['whole']:11.3f} {r['b faces/s']:11.1f} "
            f"{r['a faces/s']:13.1f} {r['flops'] / 1e9:10.3f}"
        )
    print(
        f"ratio b/a and faces/s: by median step, best of {args.rounds} rounds each way (whole fit: by whole "
        "fit's time); GFLOP/face: forward+backward"
    )


if __name__ == "__main__":
    main()
