"""Whether this machine gives training its cores: faces/s, CPU seconds and steal time per epoch.

    python benchmarks/bench_cpu_share.py [--config cpu] [--set KEY=VALUE ...] [--faces 3136] [--epochs 8]

Trains a config's full-label network with plain `model.fit` (preloaded random faces, no augmentation, no
callbacks) one epoch at a time, and prints for each epoch its faces/s, this process's CPU seconds over wall seconds
(about the number of cores the backend got) and the share of the machine's CPU time the hypervisor stole
(psutil; 0 where the platform does not report it). The baseline is the run's own best epoch: an epoch far
slower than it, with the same CPU seconds, was not given the cores. Run it before a timed run: on a VM capped
to one core for stretches, epochs alternate between two speeds (2026-12-01: 303-304 faces/s with CPU = wall,
against 439-543 faces/s on both cores), and a timed figure taken there is not comparable with one taken on a
machine that never throttles.
The CPU seconds per epoch do not depend on the cap, so they compare networks (``--set KEY=VALUE``).
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import psutil
from common import plain_model

from competition.config import load_config
from competition.machine import keep_freed_memory
from competition.models import target_statistics

THROTTLED = 0.7  # an epoch under this share of the best epoch's faces/s counts as throttled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="cpu", help="config name or TOML path [default: cpu]")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, as `fkp cv --set` does (repeatable)",
    )
    parser.add_argument("--faces", type=int, default=3136, help="faces per epoch [default: 3136, fold 0's size]")
    parser.add_argument("--epochs", type=int, default=8, help="timed epochs [default: 8]")
    args = parser.parse_args()

    keep_freed_memory()
    settings = load_config(args.config, args.overrides).specialist("full")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.faces, 96, 96, 1)).astype(np.float32)
    targets = rng.uniform(20, 76, (args.faces, 30)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = plain_model(settings, *target_statistics(targets))
    batch = settings.train.batch_size
    model.fit(faces[: 4 * batch], targets[: 4 * batch], batch_size=batch, epochs=1, verbose=0)  # tracing

    print(
        f"config {' '.join([args.config, *args.overrides])}: full-label network, batch {batch}, "
        f"{args.faces} faces per epoch, backend {keras.backend.backend()}"
    )
    print(f"{'epoch':>5} {'faces/s':>8} {'wall s':>7} {'cpu s':>6} {'cpu/wall':>8} {'steal':>6}")
    rates = []
    for epoch in range(1, args.epochs + 1):
        psutil.cpu_times_percent()  # the next call's percentages are since this one
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(faces, targets, batch_size=batch, epochs=1, verbose=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        steal = getattr(psutil.cpu_times_percent(), "steal", 0.0)
        rates.append(args.faces / wall)
        print(f"{epoch:>5} {rates[-1]:8.0f} {wall:7.1f} {cpu:6.1f} {cpu / wall:8.2f} {steal:5.0f}%", flush=True)
    best = max(rates)
    slow = [rate for rate in rates if rate < THROTTLED * best]
    print(f"best epoch {best:.0f} faces/s; each epoch against it: " + ", ".join(f"{rate / best:.2f}" for rate in rates))
    print(
        f"throttled epochs (under {THROTTLED:.0%} of the best): {len(slow)} of {len(rates)}"
        + ("" if not slow else f", at {np.mean(slow):.0f} faces/s")
    )


if __name__ == "__main__":
    main()
