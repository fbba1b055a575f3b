"""Loading the competition files: fkp's cold parse and its cache against a plain baseline.

    python benchmarks/bench_load.py [--data DIR] [--repeat 3]

For the training and the test file (zipped or not, as found in --data): fkp's load with an empty
cache (cold: unzip, validate, parse, write the cache), its load from the cache, and, in the same
run, the baseline `pandas.read_csv` then a per-row `np.array(s.split(), dtype=np.uint8)` (the
fastest per-row split: with a float dtype or `np.fromstring` it takes 2-3x longer). Also times
unzipping alone, a cost both sides pay, and the same measurements on the extracted CSVs.
Goals (issue 5): the cached training load
<= 0.5 s, the cold load >= 5x faster than the baseline.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from common import NOISE_NOTE, default_data_dir, measure, verdict

from competition import data

CACHED_GOAL_S, RATIO_GOAL = 0.5, 5.0


def source(folder: Path, stem: str) -> Path:
    return next(p for p in (folder / f"{stem}.csv", folder / f"{stem}.zip") if p.exists())


def read_member(path: Path, stem: str) -> bytes:
    if path.suffix != ".zip":
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        return archive.read(f"{stem}.csv")


def baseline(path: Path) -> np.ndarray:
    frame = pd.read_csv(path)
    return np.stack([np.array(s.split(), dtype=np.uint8) for s in frame["Image"]]).reshape(-1, 96, 96)


def bench_file(folder: Path, stem: str, load, repeat: int, scratch: Path) -> tuple:
    path = source(folder, stem)
    caches = iter(range(repeat))

    def fresh_cache() -> None:
        os.environ["FKP_CACHE_DIR"] = str(scratch / f"cache-{path.name}-{next(caches)}")

    cold, loaded = measure(lambda: load(folder), repeat, setup=fresh_cache)
    cached, _ = measure(lambda: load(folder), repeat)
    plain, expected = measure(lambda: baseline(path), repeat)
    if not np.array_equal(loaded.images, expected):
        raise SystemExit(f"{path}: fkp's images differ from the baseline's")
    rows = [("fkp cold (empty cache)", cold), ("fkp cached", cached), ("baseline read_csv + split", plain)]
    if path.suffix == ".zip":
        rows.append(("unzipping alone (both pay it)", measure(lambda: read_member(path, stem), repeat)[0]))
    for how, timing in rows:
        print(f"{path.name:<13} {how:<31} {timing.wall:7.3f} {timing.cpu:7.3f} {len(loaded) / timing.wall:9.0f}")
    return path.name, cold, cached, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="competition folder [default: ../shared/fkp-data, else the bundled sample]",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is shown")
    args = parser.parse_args()
    folder = args.data or default_data_dir()
    print(f"bench_load: {folder}; {NOISE_NOTE.format(n=args.repeat)}")
    print(f"{'file':<13} {'how':<31} {'wall s':>7} {'cpu s':>7} {'faces/s':>9}")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        extracted = scratch / "extracted"
        extracted.mkdir()
        for stem, load in (("training", data.load_training), ("test", data.load_test)):
            results.append(bench_file(folder, stem, load, args.repeat, scratch))
            if source(folder, stem).suffix == ".zip":  # the same file as Kaggle's extracted CSV
                (extracted / f"{stem}.csv").write_bytes(read_member(source(folder, stem), stem))
                results.append(bench_file(extracted, stem, load, args.repeat, scratch))

    print()
    for name, cold, cached, plain in results:
        by_wall, by_cpu = cold.ratio(plain)
        print(
            f"{name}: cold load {by_wall:.1f}x faster than the baseline by wall, {by_cpu:.1f}x by CPU "
            f"(goal >= {RATIO_GOAL:.0f}x: {verdict(min(by_wall, by_cpu) >= RATIO_GOAL)}); "
            f"cached load {plain.wall / cached.wall:.0f}x"
        )
    cached = results[0][2]
    print(
        f"{results[0][0]}: cached load {cached.wall:.3f} s "
        f"(goal <= {CACHED_GOAL_S} s: {verdict(cached.wall <= CACHED_GOAL_S)})"
    )


if __name__ == "__main__":
    main()
