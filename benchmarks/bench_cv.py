"""Wall time and peak memory of a whole `fkp cv`.

    python benchmarks/bench_cv.py [--data DIR] [--config default] [--folds 5] [-- MORE fkp cv OPTIONS]
    python benchmarks/bench_cv.py --config smoke -- --limit 600 --epochs 2      # a cheap check

Runs `python -m competition cv --folds K --config C` on this checkout as a child process, in a
temporary folder (fresh folds and runs; the parsed-data cache is the usual one), passing its
output through. Peak RSS is the child's high-water mark from `resource.getrusage(RUSAGE_CHILDREN)`
(the largest process of the run; fkp cv trains in one process). Goal (issue 5): <= 3 GiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, default_data_dir, verdict

RSS_GOAL_GIB = 3.0
KIB_PER_RSS_UNIT = 1 / 1024 if sys.platform == "darwin" else 1  # macOS reports bytes, Linux KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="competition folder [default: ../shared/fkp-data, else the bundled sample]")
    parser.add_argument("--config", default="default")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("more", nargs=argparse.REMAINDER, help="after --: more `fkp cv` options")
    args = parser.parse_args()
    more = args.more[1:] if args.more[:1] == ["--"] else args.more
    folder = (args.data or default_data_dir()).resolve()
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "competition", "cv", "--data", str(folder), "--folds", str(args.folds),
                   "--config", args.config, *more]
        print("bench_cv:", " ".join(command), flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        started = time.perf_counter()
        returncode = subprocess.run(command, cwd=work, env=env).returncode
        wall = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * KIB_PER_RSS_UNIT / 2**20
    print(f"bench_cv: exit {returncode}, wall {wall:.0f} s ({wall / 60:.1f} min), peak RSS {peak_gib:.2f} GiB "
          f"(goal <= {RSS_GOAL_GIB:.0f} GiB: {verdict(peak_gib <= RSS_GOAL_GIB)})")
    sys.exit(returncode)


if __name__ == "__main__":
    main()
