"""The corrections loop: does training on `fkp audit --propose-corrections` improve the out-of-fold RMSE?

    python benchmarks/bench_corrections.py [--data DIR] [--work DIR] [--runs-dir runs] [--baseline NAME]
        [--config cpu] [--folds 3] [--set KEY=VALUE ...] [--limit 100]

Trains (or resumes) a baseline run on ``--data`` with the stored folds (``folds/``), audits it with
``--propose-corrections --limit N``, makes ``WORK/<data folder's name>/``: Kaggle's files linked, the proposal as
corrections.csv (the same folder name, so the same stored folds), trains the same config on it (run
``<baseline>-corrected``), and scores both runs' out-of-fold answers (TTA, each run's inference head
cross-fitted) against the original labels and against the corrected ones, leaderboard-style.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import numpy as np
from bench_audit import DEFAULT_SETTINGS
from common import FKP, ROOT, SHARED_DATA


def cv(data: Path, run: str, args, settings: list[str]) -> None:
    command = [
        *FKP,
        "cv",
        "--data",
        str(data),
        "--folds",
        str(args.folds),
        "--config",
        args.config,
        "--run",
        run,
        "--runs-dir",
        str(args.runs_dir),
        *(f"--set={setting}" for setting in settings),
    ]
    print("$", " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"  {time.perf_counter() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--work", type=Path, required=True, help="folder for the corrected copy")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    parser.add_argument("--baseline", default="audit-base", help="the baseline run's name")
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--set", dest="settings", action="append", default=None)
    parser.add_argument("--limit", type=int, default=100, help="fkp audit --limit: findings the proposal draws on")
    args = parser.parse_args()
    settings = DEFAULT_SETTINGS if args.settings is None else args.settings
    args.runs_dir = args.runs_dir.resolve()
    source = args.data.resolve()

    cv(source, args.baseline, args, settings)
    audit_dir = args.work.resolve() / "audit"
    command = [
        *FKP,
        "audit",
        "--data",
        str(source),
        "--run",
        args.baseline,
        "--runs-dir",
        str(args.runs_dir),
        "--limit",
        str(args.limit),
        "--out",
        str(audit_dir),
        "--propose-corrections",
    ]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    corrected = args.work.resolve() / source.name
    corrected.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix in (".zip", ".csv") and path.name != "corrections.csv" and not (corrected / path.name).exists():
            (corrected / path.name).symlink_to(path)
    (corrected / "corrections.csv").write_bytes((audit_dir / "corrections.proposed.csv").read_bytes())
    cv(corrected, f"{args.baseline}-corrected", args, settings)
    score(source, corrected, args.runs_dir, args.baseline)


def score(source: Path, corrected: Path, runs_dir: Path, baseline: str) -> None:
    from competition.corrections import read_corrections
    from competition.data import load_training
    from competition.evaluate import oof_answers, score
    from competition.run import checked_run, variant
    from competition.schema import COORDINATES

    original, fixed = load_training(source), load_training(corrected)
    lines = read_corrections(corrected / "corrections.csv", len(original))
    print(
        f"{len(lines)} corrections: {(lines['x'].notna()).sum()} keypoints moved (swaps), "
        f"{(lines['x'].isna()).sum()} dropped"
    )
    for name, training in ((baseline, original), (f"{baseline}-corrected", fixed)):
        run = checked_run(runs_dir / name, training)
        answers = oof_answers(run, variant(run.tta_used(None)), training)
        rows = answers.index.to_numpy()
        predicted = answers[list(COORDINATES)].to_numpy()
        for label, truth in (("original labels", original), ("corrected labels", fixed)):
            figures = score(truth.keypoints[rows], predicted, truth.style[rows])
            print(f"run {name} against {label}: " + ", ".join(f"{k} {v:.5f}" for k, v in figures.items()))
    assert np.array_equal(original.images, fixed.images)


if __name__ == "__main__":
    main()
