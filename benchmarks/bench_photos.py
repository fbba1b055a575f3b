"""`fkp predict` on photos with known keypoints: faces framed from the detector's box against the face as given,
and its speed: seconds to load the run's models and trace its graph, the first photo after that, and each further
photo and face.

Each photo is a training face the run did not train on (rows after its --limit), enlarged 3x, turned by
a random angle up to --tilt degrees and placed at a random spot of a 480x480 canvas (edge pixels
replicated). Keypoint errors are RMSE over the labelled coordinates, in the 96x96 face's pixels, on the
photos where the detector found exactly one face; the face as given (no detection) is the baseline.

    python benchmarks/bench_photos.py --run runs/learned --faces 200

The speed lines time what `fkp predict` runs for a photo (``predict.find_keypoints``: detection, framing, the
run's model through ``export.face_predictor``), not its picture and CSV; ``--pictures`` also times the whole
``predict.predict_photos`` (pictures and predictions.csv) on the same photos.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from common import default_data_dir

from competition import data
from competition.evaluate import rmse
from competition.export import face_predictor, run_model
from competition.predict import detector, find_keypoints, load_framing, predict_photos, to_photo
from competition.run import Run

CANVAS, ZOOM = 480, 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--tilt", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", action="store_true", help="also time predict_photos with its pictures and CSV")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="default: the run's")
    args = parser.parse_args()
    run = Run(args.run)
    training = data.load_training(args.data)
    rows = np.arange(run.spec.limit or 0, len(training))[: args.faces]
    began = time.perf_counter()
    model = run_model(run, run.tta_used(args.tta))
    loaded = time.perf_counter()
    predict = face_predictor(model)
    traced = time.perf_counter()
    framing, cascade, rng = load_framing(), detector(), np.random.default_rng(args.seed)
    truth, found = {k: [] for k in ("as given", "detected")}, {k: [] for k in ("as given", "detected")}
    seconds, faces, first = 0.0, 0, None
    single = 0
    photos = []
    for row in rows:
        face, points = training.images[row], training.keypoints[row]
        angle = np.deg2rad(rng.uniform(-args.tilt, args.tilt))
        turn = ZOOM * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = rng.uniform(40, CANVAS - 40 - ZOOM * 96, size=2) + 48 * ZOOM - turn @ [48, 48]
        into = np.vstack([np.hstack([turn, shift[:, None]]), [0, 0, 1]])
        photo = cv2.warpAffine(face, into[:2], (CANVAS, CANVAS), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        rgb = np.repeat(photo[..., None], 3, axis=2)
        photos.append(rgb)
        started = time.perf_counter()
        result = find_keypoints(rgb, predict, framing, cascade)
        took = time.perf_counter() - started
        if first is None:
            first = took
        else:
            seconds += took
            faces += len(result.boxes)
        if len(result.boxes) != 1:
            continue
        single += 1
        for key, keypoints in (("detected", result.keypoints[0]), ("as given", predict(face[None])[0])):
            found[key].append(keypoints if key == "as given" else to_photo(keypoints, into))  # photo -> face
            truth[key].append(points)
    print(
        f"{len(rows)} photos from run {run.name}'s unseen faces ({'TTA' if run.tta_used(args.tta) else 'no TTA'}), "
        f"tilt up to {args.tilt} deg: "
        f"exactly one face found in {single}"
    )
    for key in found:
        print(f"  {key}: RMSE {rmse(np.array(truth[key]), np.array(found[key])):.3f} px (96x96 face pixels)")
    further = max(len(rows) - 1, 1)
    print(f"  models loaded in {loaded - began:.2f} s, graph traced in {traced - loaded:.2f} s")
    print(f"  first {CANVAS}x{CANVAS} photo after that: {first:.3f} s")
    print(
        f"  each further photo: {seconds / further:.3f} s; each further face: {seconds / max(faces, 1):.3f} s "
        f"({faces / seconds:.1f} faces/s, {faces} faces in {further} photos)"
    )
    if args.pictures:
        import tempfile

        from PIL import Image

        with tempfile.TemporaryDirectory() as folder:
            paths = []
            for index, rgb in enumerate(photos):
                paths.append(Path(folder) / f"photo{index:04d}.png")
                Image.fromarray(rgb).save(paths[-1])
            started = time.perf_counter()
            predict_photos(paths, predict, Path(folder) / "out", log=lambda line: None)
            per_photo = (time.perf_counter() - started) / len(paths)
            print(f"  with pictures and predictions.csv: {per_photo:.3f} s per photo")


if __name__ == "__main__":
    main()
