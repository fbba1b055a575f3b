"""A distilled run against the blend of runs it learned from: test faces answered per second by what
`fkp export` builds (``export.run_model``) for the student, with and without its TTA, and for each teacher run
as a blend answers them (each with its own TTA); the blend's cost is the sum of its runs'.

    python benchmarks/bench_distill.py --student runs/student --teachers runs/a runs/b --faces 512

Accuracy is not measured here: `fkp cv` prints the student's cv_rmse, `fkp blend --runs A B` the blend's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import NOISE_NOTE, cpu_model, default_data_dir, measure

from competition import data
from competition.export import face_predictor, run_model
from competition.run import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--teachers", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--faces", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    faces = data.load_test(args.data).images[: args.faces]
    print(f"{cpu_model()}; {len(faces)} test faces; {NOISE_NOTE.format(n=args.repeat)}")

    def timing(run: Run, tta: bool):
        predict = face_predictor(run_model(run, tta))  # traced here, untimed
        return measure(lambda: predict(faces), args.repeat)[0]

    student = Run(args.student)
    plain, tta = timing(student, False), timing(student, True)
    teachers = [timing(run, run.tta_used(None)) for run in map(Run, args.teachers)]
    blend_wall, blend_cpu = sum(t.wall for t in teachers), sum(t.cpu for t in teachers)
    for label, t in (("student, no TTA", plain), ("student, its TTA", tta)):
        print(f"{label}: {len(faces) / t.wall:.0f} faces/s ({t.wall:.2f} s wall, {t.cpu:.2f} s CPU)")
    for path, t in zip(args.teachers, teachers):
        print(f"teacher {path.name}: {len(faces) / t.wall:.0f} faces/s ({t.wall:.2f} s wall, {t.cpu:.2f} s CPU)")
    print(f"the blend of {len(teachers)}: {len(faces) / blend_wall:.0f} faces/s")
    for label, t in (("no TTA", plain), ("its TTA", tta)):
        print(f"student ({label}) faster than the blend: x{blend_wall / t.wall:.1f} wall, x{blend_cpu / t.cpu:.1f} CPU")


if __name__ == "__main__":
    main()
