"""What a fold's TensorBoard logs cost: epochs of `train.train_stage` with and without them.

    python benchmarks/bench_tensorboard.py [--data DIR] [--config smoke] [--limit 600] [--epochs 3] [--rounds 3]

One process prepares fold 0 of a 2-fold split of the first --limit faces for the full specialist as
`fkp cv` does, then alternates, for --rounds rounds, training fresh weights for --epochs epochs
without callbacks of its own and with `train.tensorboard_logs` (what every `fkp cv` fold writes).
Prints the best and median seconds per epoch of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import default_data_dir

from competition import data
from competition.config import load_config
from competition.folds import make_folds
from competition.train import build_fold_model, prepare_fold, tensorboard_logs, train_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--config", default="smoke")
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    training = data.load_training(args.data or default_data_dir()).head(args.limit)
    folds = make_folds(training, 2, 42)
    settings = load_config(args.config).specialist("full")
    prepared = prepare_fold("full", 0, settings, training, folds, seed=0)
    per_epoch: dict[str, list[float]] = {"without logs": [], "with TensorBoard logs": []}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for way in per_epoch:
                callbacks = tensorboard_logs(Path(folder) / f"{round_}", "[bench]") if way != "without logs" else []
                model = build_fold_model(prepared, settings)
                started = time.perf_counter()
                train_stage(
                    model, prepared, settings.train, epochs=args.epochs, log_prefix=f"[{way}]", callbacks=callbacks
                )
                per_epoch[way].append((time.perf_counter() - started) / args.epochs)
    print(
        f"{len(prepared.train_rows)} training faces, config {args.config}, {args.epochs} epochs, {args.rounds} rounds"
    )
    for way, seconds in per_epoch.items():
        print(f"{way:>22}: best {min(seconds):.3f} s/epoch, median {statistics.median(seconds):.3f} s/epoch")
    base, logged = per_epoch.values()
    print(
        f"ratio (with / without): best {min(logged) / min(base):.3f}, median "
        f"{statistics.median(logged) / statistics.median(base):.3f}"
    )


if __name__ == "__main__":
    main()
