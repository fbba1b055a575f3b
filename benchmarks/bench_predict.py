"""Prediction throughput with and without flip test-time augmentation, over batch sizes.

    python benchmarks/bench_predict.py [--data DIR] [--config default | --model runs/R/full/fold0/model.keras]
                                       [--faces 256] [--batch-sizes 32,64,128,256] [--repeat 3]

Times `tta.predict_pixels` (plain) and `tta.predict_with_tta` (one graph holding the plain pass and the
mirrored one, mapped back; the config's TTA shifts are not applied here) on the first --faces test faces, for
each batch size, after one untimed call at that batch size. The baseline, timed the same way in the same
process, is Keras' own `model.predict` on the same faces: `predict_pixels` goes batch by batch with
`predict_on_batch` instead, and the ratio shows what that saves.
Without --model, the config's full-label network with fresh weights (the same arithmetic as a trained
one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
from common import NOISE_NOTE, default_data_dir, flops_per_face, measure

from competition import data
from competition.config import load_config
from competition.models import build_model
from competition.schema import IMAGE_SIZE, SPECIALISTS
from competition.tta import predict_pixels, predict_with_tta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="competition folder [default: ../shared/fkp-data, else the bundled sample]",
    )
    parser.add_argument("--config", default="default", help="config whose full-label network to build")
    parser.add_argument("--model", type=Path, default=None, help="a trained model.keras instead")
    parser.add_argument("--faces", type=int, default=256, help="test faces predicted per timing")
    parser.add_argument("--batch-sizes", default="32,64,128,256")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is shown")
    args = parser.parse_args()

    if args.model:
        model = keras.saving.load_model(args.model, compile=False)
        specialist = next(s for s in SPECIALISTS.values() if len(s.coordinates) == model.output_shape[-1])
    else:
        specialist = SPECIALISTS["full"]
        settings = load_config(args.config).specialist(specialist.name)
        k = len(specialist.coordinates)
        model = build_model(settings.model, [IMAGE_SIZE / 2] * k, [10.0] * k, settings.train.learning_rate)
    images = data.load_test(args.data or default_data_dir()).images[: args.faces]
    forward, _ = flops_per_face(model)
    print(
        f"bench_predict: {args.model or f'config {args.config}'} ({specialist.name} specialist), "
        f"{len(images)} test faces, backend {keras.backend.backend()}, {forward / 1e9:.3f} GFLOP per face "
        f"forward; {NOISE_NOTE.format(n=args.repeat)}"
    )
    print(
        f"{'batch':>5} {'model.predict faces/s':>21} {'plain faces/s':>14} {'ratio':>6} {'GFLOP/s':>8} "
        f"{'cpu ms/face':>12} {'flip TTA faces/s':>17} {'cpu ms/face':>12} {'TTA cost wall':>14} {'by cpu':>7}"
    )
    floats = images[..., None].astype(np.float32)  # what model.predict takes
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        predict_with_tta(model, images[:batch_size], specialist, batch_size)  # traces this batch size
        baseline, _ = measure(lambda size=batch_size: model.predict(floats, batch_size=size, verbose=0), args.repeat)
        plain, _ = measure(lambda size=batch_size: predict_pixels(model, images, size), args.repeat)
        flipped, _ = measure(lambda size=batch_size: predict_with_tta(model, images, specialist, size), args.repeat)
        rate = len(images) / plain.wall
        tta_by_wall, tta_by_cpu = plain.ratio(flipped)
        print(
            f"{batch_size:5d} {len(images) / baseline.wall:21.1f} {rate:14.1f} {baseline.wall / plain.wall:5.2f}x "
            f"{rate * forward / 1e9:8.1f} {plain.cpu / len(images) * 1e3:12.1f} "
            f"{len(images) / flipped.wall:17.1f} {flipped.cpu / len(images) * 1e3:12.1f} "
            f"{tta_by_wall:13.2f}x {tta_by_cpu:6.2f}x"
        )


if __name__ == "__main__":
    main()
