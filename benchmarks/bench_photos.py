"""`fkp predict` on photos with known keypoints: first pass (framed from the detector's box) against the
second (re-framed on the first pass's eyes and lip), and seconds per photo.

Each photo is a training face the run did not train on (rows after its --limit), enlarged 3x, turned by
a random angle up to --tilt degrees and placed at a random spot of a 480x480 canvas (edge pixels
replicated). Keypoint errors are RMSE over the labelled coordinates, in the 96x96 face's pixels, on the
photos where the detector found exactly one face; the face as given (no detection) is the baseline.

    python benchmarks/bench_photos.py --run runs/learned --faces 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import default_data_dir

import cv2
import numpy as np

from competition import data
from competition.blend import tta_used
from competition.evaluate import rmse
from competition.export import run_model
from competition.photos import detector, find_keypoints, load_framing, to_photo
from competition.predict import predict_pixels
from competition.runs import Run

CANVAS, ZOOM = 480, 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--tilt", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = Run(args.run)
    training = data.load_training(args.data)
    rows = np.arange(run.spec.limit or 0, len(training))[: args.faces]
    model = run_model(run, tta_used(run, None))
    predict = lambda faces: predict_pixels(model, faces)  # noqa: E731
    framing, cascade, rng = load_framing(), detector(), np.random.default_rng(args.seed)
    truth, found = {k: [] for k in ("as given", "pass 1", "pass 2")}, {k: [] for k in ("as given", "pass 1", "pass 2")}
    seconds = {1: 0.0, 2: 0.0}
    single = 0
    for row in rows:
        face, points = training.images[row], training.keypoints[row]
        angle = np.deg2rad(rng.uniform(-args.tilt, args.tilt))
        turn = ZOOM * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = rng.uniform(40, CANVAS - 40 - ZOOM * 96, size=2) + 48 * ZOOM - turn @ [48, 48]
        into = np.vstack([np.hstack([turn, shift[:, None]]), [0, 0, 1]])
        photo = cv2.warpAffine(face, into[:2], (CANVAS, CANVAS), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        rgb = np.repeat(photo[..., None], 3, axis=2)
        results = {}
        for passes in (1, 2):
            started = time.perf_counter()
            results[passes] = find_keypoints(rgb, predict, framing, cascade, passes=passes)
            seconds[passes] += time.perf_counter() - started
        if len(results[1].boxes) != 1:
            continue
        single += 1
        for key, keypoints in (("pass 1", results[1].keypoints[0]), ("pass 2", results[2].keypoints[0]),
                               ("as given", predict(face[None])[0])):
            found[key].append(keypoints if key == "as given" else to_photo(keypoints, into))  # photo -> face
            truth[key].append(points)
    print(f"{len(rows)} photos from run {run.name}'s unseen faces, tilt up to {args.tilt} deg: "
          f"exactly one face found in {single}")
    for key in found:
        print(f"  {key}: RMSE {rmse(np.array(truth[key]), np.array(found[key])):.3f} px (96x96 face pixels)")
    for passes, total in seconds.items():
        print(f"  {passes} pass{'es' if passes > 1 else ''}: {total / len(rows):.3f} s per {CANVAS}x{CANVAS} photo")


if __name__ == "__main__":
    main()
