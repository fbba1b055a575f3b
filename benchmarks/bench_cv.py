"""Wall time and peak memory of a whole `fkp cv`.

    python benchmarks/bench_cv.py [--data DIR] [--config default] [--folds 5] [-- MORE fkp cv OPTIONS]
    python benchmarks/bench_cv.py --config smoke -- --limit 600 --epochs 2      # a cheap check

Runs `python -m competition cv --folds K --config C` on this checkout as a child process, in a
temporary folder (fresh folds and runs; the parsed-data cache is the usual one), passing its
output through. fkp cv trains its folds in a child process, so the figure that matters is
the whole process tree's: its summed RSS, sampled every 0.2 s with psutil (peak RSS, goal
<= 3 GiB). The largest single process's high-water mark (`getrusage(RUSAGE_CHILDREN)`, what
`/usr/bin/time -v` reports) is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import FKP, ROOT, default_data_dir, verdict

RSS_GOAL_GIB = 3.0
KIB_PER_RSS_UNIT = 1 / 1024 if sys.platform == "darwin" else 1  # macOS reports bytes, Linux KiB


def tree_rss(process: psutil.Process) -> int:
    """Bytes resident in a process and all its descendants now (0 for any that just ended)."""
    total = 0
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in family:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="competition folder [default: ../shared/fkp-data, else the bundled sample]",
    )
    parser.add_argument("--config", default="default")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("more", nargs=argparse.REMAINDER, help="after --: more `fkp cv` options")
    args = parser.parse_args()
    more = args.more[1:] if args.more[:1] == ["--"] else args.more
    folder = (args.data or default_data_dir()).resolve()
    with tempfile.TemporaryDirectory() as work:
        command = [
            *FKP,
            "cv",
            "--data",
            str(folder),
            "--folds",
            str(args.folds),
            "--config",
            args.config,
            *more,
        ]
        print("bench_cv:", " ".join(command), flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        started = time.perf_counter()
        child = psutil.Popen(command, cwd=work, env=env)
        tree_peak = 0
        while child.poll() is None:
            tree_peak = max(tree_peak, tree_rss(child))
            time.sleep(0.2)
        returncode = child.returncode
        wall = time.perf_counter() - started
    peak_gib = tree_peak / 2**30
    largest_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * KIB_PER_RSS_UNIT / 2**20
    print(
        f"bench_cv: exit {returncode}, wall {wall:.0f} s ({wall / 60:.1f} min), peak RSS {peak_gib:.2f} GiB "
        f"summed over the process tree (goal <= {RSS_GOAL_GIB:.0f} GiB: {verdict(peak_gib <= RSS_GOAL_GIB)}); "
        f"largest single process {largest_gib:.2f} GiB"
    )
    sys.exit(returncode)


if __name__ == "__main__":
    main()
