"""What keeping freed memory buys: epochs of `train.train_stage` with glibc's default allocator and with
`machine.keep_freed_memory`.

    python benchmarks/bench_allocator.py [--data DIR] [--config cpu] [--limit 2000] [--epochs 3] [--rounds 2]

mallopt settings last for a process's life, so each way trains in a process of its own (the baseline is
the same script, run the same way, without the call), alternated for --rounds rounds. Each process
prepares fold 0 of a 5-fold split of the first --limit faces for the full specialist as `fkp cv` does,
trains one warm-up epoch (graph tracing), then --epochs timed epochs. Prints each way's best seconds per
epoch, faces/s, CPU seconds of the kernel (system) and of the process (user), and page faults, with
the ratios default/kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import ROOT, default_data_dir

_ONE_WAY = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from competition.machine import keep_freed_memory
kept = sys.argv[2] == "kept" and keep_freed_memory()
from competition import data
from competition.config import load_config
from competition.folds import make_folds
from competition.train import build_fold_model, prepare_fold, train_stage
training = data.load_training(Path(sys.argv[3])).head(int(sys.argv[5]))
settings = load_config(sys.argv[4]).specialist("full")
prepared = prepare_fold("full", 0, settings, training, make_folds(training, 5, 0), seed=0)
model = build_fold_model(prepared, settings)
train_stage(model, prepared, settings.train, epochs=1, log_prefix="[warm-up]")
epochs = int(sys.argv[6])
before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
train_stage(model, prepared, settings.train, epochs=epochs, log_prefix="[timed]")
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"kept": kept, "epoch_s": (time.perf_counter() - started) / epochs,
                  "faces": len(prepared.train_rows), "user_s": after.ru_utime - before.ru_utime,
                  "system_s": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt}))
"""


def one_way(way: str, args) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _ONE_WAY,
            str(ROOT),
            way,
            str(args.data),
            args.config,
            str(args.limit),
            str(args.epochs),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.exit(f"the {way} process failed:\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.data = args.data or default_data_dir()
    best = {}
    for round_ in range(args.rounds):
        for way in ("default", "kept"):
            result = one_way(way, args)
            if way == "kept" and not result["kept"]:
                sys.exit("this C library is not glibc: keep_freed_memory changes nothing here")
            print(
                f"round {round_ + 1} {way:7}  {result['epoch_s']:.2f} s/epoch  system {result['system_s']:.1f} s  "
                f"user {result['user_s']:.1f} s  page faults {result['faults']:,}",
                flush=True,
            )
            if way not in best or result["epoch_s"] < best[way]["epoch_s"]:
                best[way] = result
    print(
        f"\nconfig {args.config}, fold 0 of the first {args.limit} faces ({best['kept']['faces']} training faces), "
        f"{args.epochs} timed epochs per process, best of {args.rounds} rounds each way"
    )
    print(f"{'way':8} {'s/epoch':>8} {'faces/s':>8} {'system s':>9} {'user s':>7} {'page faults':>12}")
    for way, result in best.items():
        print(
            f"{way:8} {result['epoch_s']:8.2f} {result['faces'] / result['epoch_s']:8.0f} {result['system_s']:9.1f} "
            f"{result['user_s']:7.1f} {result['faults']:12,}"
        )
    default, kept = best["default"], best["kept"]
    print(
        f"default/kept: {default['epoch_s'] / kept['epoch_s']:.2f}x the speed, "
        f"{default['faults'] / max(kept['faults'], 1):.1f}x fewer page faults, "
        f"{default['system_s'] / max(kept['system_s'], 1e-3):.1f}x less system time"
    )


if __name__ == "__main__":
    main()
