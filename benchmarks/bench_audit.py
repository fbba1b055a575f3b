"""How well `fkp audit` finds labels damaged on purpose, and names what is wrong with them.

    python benchmarks/bench_audit.py [--data DIR] [--seed 0] [--work DIR] [--config cpu] [--folds 3]
        [--set KEY=VALUE ...] [--skip-train]

Makes a seeded, damaged copy of the competition folder in ``--work`` (default: a temporary folder): its
training.zip's training.csv rewritten with 60 labels damaged on purpose, on labelled keypoints only:
20 left/right swaps (one flip pair of the face exchanged), 20 single keypoints moved 6 to 15 px, 20 whole
faces shifted 3 to 6 px (every labelled keypoint); the list is kept beside it (``planted.csv``). Trains a
run on the copy (`python -m competition cv`, resumed when ``--work`` already holds it), audits it, and
prints the recall and precision of the planted faces among the top 60, 150 and 300 findings, and how often
each planted kind is named right. Goal: >= 90% of the planted errors in the top 150.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from common import FKP, ROOT, SHARED_DATA, verdict

PLANTED = {"swap": 20, "misplaced": 20, "shift": 20}
MOVE_PX, SHIFT_PX = (6.0, 15.0), (3.0, 6.0)
TOPS = (60, 150, 300)
GOAL_TOP, GOAL_RECALL = 150, 0.9
DEFAULT_SETTINGS = [
    "train.epochs=30",
    "train.max_minutes=0",
    "inference.tta_shift=0",
    "inference.reframe=0",
]


def plant(training: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A damaged copy of Kaggle's training rows (all columns as strings) and the list of what was planted."""
    from competition.schema import FLIP_PAIRS, IMAGE_SIZE, KEYPOINTS

    rng = np.random.default_rng(seed)
    points = np.stack(
        [training[[f"{k}_x", f"{k}_y"]].apply(pd.to_numeric).to_numpy(float) for k in KEYPOINTS], axis=1
    )  # (N, 15, 2)
    labelled = ~np.isnan(points).any(axis=2)
    damaged = points.copy()
    order = iter(rng.permutation(len(training)))
    planted = []

    def inside(xy):
        return bool(np.all((xy >= 1) & (xy <= IMAGE_SIZE - 1)))

    for kind, count in PLANTED.items():
        done = 0
        while done < count:
            row = int(next(order))
            have = np.flatnonzero(labelled[row])
            if kind == "swap":
                pairs = [
                    (KEYPOINTS.index(a), KEYPOINTS.index(b))
                    for a, b in FLIP_PAIRS
                    if labelled[row, KEYPOINTS.index(a)] and labelled[row, KEYPOINTS.index(b)]
                ]
                if not pairs:
                    continue
                a, b = pairs[rng.integers(len(pairs))]
                damaged[row, [a, b]] = points[row, [b, a]]
                planted.append((row, kind, KEYPOINTS[a], KEYPOINTS[b], np.nan, np.nan))
            else:
                low, high = MOVE_PX if kind == "misplaced" else SHIFT_PX
                moved = [int(have[rng.integers(len(have))])] if kind == "misplaced" else list(have)
                for _ in range(50):  # a direction that keeps the moved points in the image
                    length, angle = rng.uniform(low, high), rng.uniform(0, 2 * np.pi)
                    step = length * np.array([np.cos(angle), np.sin(angle)])
                    if inside(points[row, moved] + step):
                        break
                else:
                    continue
                damaged[row, moved] = points[row, moved] + step
                keypoint = KEYPOINTS[moved[0]] if kind == "misplaced" else ""
                planted.append((row, kind, keypoint, "", round(step[0], 3), round(step[1], 3)))
            done += 1
    copy = training.copy()
    for i, k in enumerate(KEYPOINTS):
        for axis, name in enumerate("xy"):
            values = damaged[:, i, axis]
            changed = labelled[:, i] & (values != points[:, i, axis])
            copy.loc[changed, f"{k}_{name}"] = [repr(round(float(v), 4)) for v in values[changed]]
    planted = pd.DataFrame(planted, columns=["row", "kind", "keypoint", "partner", "dx", "dy"])
    return copy, planted.sort_values("row").reset_index(drop=True)


def damaged_copy(source: Path, target: Path, seed: int) -> pd.DataFrame:
    """``target``: Kaggle's files of ``source`` with training.zip's labels damaged; the planted list."""
    listed = target / "planted.csv"
    if listed.exists():
        return pd.read_csv(listed, keep_default_na=False, na_values=[""])
    target.mkdir(parents=True, exist_ok=True)
    training = pd.read_csv(source / "training.zip", dtype=str, keep_default_na=False)
    damaged, planted = plant(training, seed)
    with zipfile.ZipFile(target / "training.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("training.csv", damaged.to_csv(index=False))
    for name in ("test.zip", "IdLookupTable.csv"):
        (target / name).write_bytes((source / name).read_bytes())
    planted.to_csv(listed, index=False)
    return planted


def evaluate(findings: pd.DataFrame, planted: pd.DataFrame) -> dict:
    """Recall and precision of the planted rows among the top findings, and how often each planted kind is named
    right (of the planted faces found in the top GOAL_TOP: the kind, and for a misplaced keypoint which one)."""
    ranked = findings.set_index("row")
    result = {}
    for top in TOPS:
        found = planted["row"].isin(findings["row"].head(top))
        result[f"recall@{top}"] = found.mean()
        result[f"precision@{top}"] = found.sum() / min(top, len(findings))
    within = planted[planted["row"].isin(findings["row"].head(GOAL_TOP))]
    for kind in PLANTED:
        mine = within[within["kind"] == kind]
        named = ranked.loc[mine["row"], "kind"].to_numpy() == kind
        if kind == "misplaced":
            named &= ranked.loc[mine["row"], "keypoint"].to_numpy() == mine["keypoint"].to_numpy()
        if kind == "swap":
            pair = {frozenset(p) for p in zip(mine["keypoint"], mine["partner"])}
            named &= [
                frozenset((k, q)) in pair
                for k, q in zip(ranked.loc[mine["row"], "keypoint"], ranked.loc[mine["row"], "partner"])
            ]
        result[f"found {kind}"] = f"{len(mine)}/{(planted['kind'] == kind).sum()}"
        result[f"named {kind}"] = f"{int(np.sum(named))}/{len(mine)}"
    result["ranks"] = sorted(int(r) for r in ranked.loc[ranked.index.isin(planted["row"]), "rank"])
    return result


def report(copy: Path, run_dir: Path, planted: pd.DataFrame) -> dict:
    """Audit the run on the damaged copy and print how the planted errors rank."""
    from competition.audit import audit
    from competition.data import load_training
    from competition.run import checked_run

    training = load_training(copy)
    started = time.perf_counter()
    result = audit([checked_run(run_dir, training)], training)
    seconds = time.perf_counter() - started
    figures = evaluate(result.findings, planted)
    print(f"audited {result.faces} faces in {seconds:.1f}s ({result.faces / seconds:.0f} faces/s)")
    for key, value in figures.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    goal = figures[f"recall@{GOAL_TOP}"] >= GOAL_RECALL
    print(f"goal: >= {GOAL_RECALL:.0%} of the planted errors in the top {GOAL_TOP}: {verdict(goal)}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="competition folder [../shared/fkp-data]")
    parser.add_argument("--seed", type=int, default=0, help="which labels are damaged, and how")
    parser.add_argument("--work", type=Path, default=None, help="folder for the copy, its folds and run [temporary]")
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument(
        "--set", dest="settings", action="append", default=None, help=f"fkp cv --set [{' '.join(DEFAULT_SETTINGS)}]"
    )
    parser.add_argument("--skip-train", action="store_true", help="audit the run already in --work")
    args = parser.parse_args()
    settings = DEFAULT_SETTINGS if args.settings is None else args.settings
    with tempfile.TemporaryDirectory() as scratch:
        work = (args.work or Path(scratch)).resolve()
        copy = work / "fkp-data-damaged"
        planted = damaged_copy(args.data.resolve(), copy, args.seed)
        print(f"{copy}: {len(planted)} planted errors ({', '.join(f'{n} {k}' for k, n in PLANTED.items())})")
        command = [
            *FKP,
            "cv",
            "--data",
            str(copy),
            "--folds",
            str(args.folds),
            "--config",
            args.config,
            "--run",
            "damaged",
            "--runs-dir",
            str(work / "runs"),
            "--folds-dir",
            str(work / "folds"),
            *(f"--set={setting}" for setting in settings),
        ]
        if not args.skip_train:
            print("$", " ".join(command[1:]).replace(str(work), "WORK"), flush=True)
            started = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True)
            print(f"trained in {time.perf_counter() - started:.0f}s")
        report(copy, work / "runs" / "damaged", planted)


if __name__ == "__main__":
    main()
