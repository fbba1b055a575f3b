"""Test-time augmentation two ways, on one trained fold: one Keras graph holding every view (``tta.predict_with_tta``,
what `fkp cv`, `fkp export` and `fkp predict` run) against the baseline it replaced, each view predicted through
the model one by one and mapped back in NumPy (kept here, as it was in competition/predict.py at 4d93e8c).

    python benchmarks/bench_tta.py --run runs/cpu [--specialist full] [--fold 0] [--faces 1024] [--repeat 3]

Both use the run's ``inference.tta_shift`` and the fold's re-framing (its fold.json). Prints seconds per
1,000 faces of each (the best of --repeat, after one untimed call), the ratio, and the
largest difference between the two answers in pixels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
from common import NOISE_NOTE, default_data_dir, measure
from keras import ops

from competition import data
from competition.augment import mirror_points
from competition.models.layers import MixPoints, ReframedFaces, ReframedPointsBack, Reframing
from competition.run import Run
from competition.schema import SPECIALISTS
from competition.tta import Reframe, predict_pixels, shift_grid, tta_model


def shifted_faces(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    if dx == dy == 0:
        return images
    reach = max(abs(dx), abs(dy))
    padded = np.pad(images, ((0, 0), (reach, reach), (reach, reach)), mode="edge")
    size = images.shape[1]
    return np.ascontiguousarray(padded[:, reach - dy : reach - dy + size, reach - dx : reach - dx + size])


def numpy_tta_views(model, images, specialist, mirror_axis, shift) -> list[np.ndarray]:
    views = []
    for dx, dy in shift_grid(shift):
        moved = shifted_faces(images, dx, dy)
        on_face = predict_pixels(model, moved)
        on_mirror = predict_pixels(model, np.ascontiguousarray(moved[:, :, ::-1]))
        mapped_back = mirror_points(on_mirror.reshape(len(images), -1, 2), specialist.flip_permutation, mirror_axis)
        offset = np.tile(np.array([dx, dy], np.float32), len(specialist.keypoints))
        views += [on_face - offset, mapped_back.reshape(len(images), -1) - offset]
    return views


def numpy_tta(model, images, specialist, mirror_axis, shift, reframe) -> np.ndarray:
    """The baseline: TTA view by view through the model, re-framing between two passes."""
    tta = np.mean(numpy_tta_views(model, images, specialist, mirror_axis, shift), axis=0)
    if reframe is None or not reframe.weight:
        return tta
    transforms = ops.convert_to_numpy(Reframing(**reframe.bounds)(ops.convert_to_tensor(tta, "float32")))
    moved = np.concatenate(
        [
            ops.convert_to_numpy(
                ReframedFaces()([images[i : i + 256, ..., None].astype("float32"), transforms[i : i + 256]])
            )[..., 0]
            for i in range(0, len(images), 256)
        ]
    )
    again = np.mean(numpy_tta_views(model, moved, specialist, mirror_axis, shift), axis=0)
    back = ReframedPointsBack()([ops.convert_to_tensor(again, "float32"), ops.convert_to_tensor(transforms, "float32")])
    return ops.convert_to_numpy(MixPoints(reframe.weight)([ops.convert_to_tensor(tta, "float32"), back]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None, help="[default: ../shared/fkp-data, else the sample]")
    parser.add_argument("--specialist", default="full")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--faces", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    run = Run(args.run)
    specialist = SPECIALISTS[args.specialist]
    model = keras.saving.load_model(run.models(args.specialist)[args.fold], compile=False)
    report = run.fold_reports(args.specialist)[args.fold]
    reframe = Reframe(**report["reframe"]) if "reframe" in report else None
    shift, axis = run.spec.resolved.inference.tta_shift, run.spec.mirror_axis
    images = data.load_test(args.data or default_data_dir()).images[: args.faces]

    def numpy_views():
        return numpy_tta(model, images, specialist, axis, shift, reframe)

    graph = tta_model(model, specialist, axis, shift, reframe)  # as `fkp cv` builds it once per fold

    def one_graph():
        return predict_pixels(graph, images)[1]

    numpy_views()  # warm: the first calls trace the model's functions
    first = time.perf_counter()
    one_graph()
    traced = time.perf_counter() - first
    in_numpy, by_numpy = measure(numpy_views, args.repeat)
    in_graph, by_graph = measure(one_graph, args.repeat)
    per_thousand = 1000 / len(images)
    print(
        f"{run.path} {args.specialist} fold {args.fold}: {len(images)} faces, tta_shift {shift} "
        f"({2 * len(shift_grid(shift))} views), "
        f"re-framing {'on' if reframe else 'off'}"
    )
    print(f"  baseline, view by view in NumPy: {in_numpy.wall * per_thousand:.2f} s per 1,000 faces")
    print(
        f"  one Keras graph (tta.tta_model, built once): {in_graph.wall * per_thousand:.2f} s per 1,000 faces, "
        f"after a first call of {traced:.1f} s that traces it"
    )
    wall, cpu = in_graph.ratio(in_numpy)
    print(
        f"  the graph is {wall:.2f}x as fast by wall time, {cpu:.2f}x by CPU time; largest difference "
        f"{np.abs(by_graph - by_numpy).max():.2e} px"
    )
    print(NOISE_NOTE.format(n=args.repeat))


if __name__ == "__main__":
    main()
