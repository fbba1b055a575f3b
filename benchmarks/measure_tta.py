"""Score a run's saved fold models under each shift of shift TTA and each test-time re-framing, without
retraining.

For every shift asked (0: flips alone) and every re-framing quantile (0: none; each fold's bounds from its
own training faces, as `fkp cv` sets them), every finished fold's model predicts its out-of-fold faces
with `tta.predict_with_tta`; the printed line is the leaderboard-style OOF score (all faces, per
annotation style, worst 20) and the seconds it took. The run's own `inference.tta_shift` and
`inference.reframe` decide what `fkp cv` wrote; this tells which to set. Measured on the data the run was
trained on:

    python benchmarks/measure_tta.py --run runs/cpu --data ../shared/fkp-data --shifts 0 1 2 3 4
    python benchmarks/measure_tta.py --run runs/cpu --data ../shared/fkp-data --shifts 3 --reframe 0 0.1 0.25 \
        --reframe-weight 0.5 0.75 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import default_data_dir

from competition import data
from competition.evaluate import OutOfFold, score, unfitted_head
from competition.run import checked_run, stack_predictions
from competition.schema import SPECIALISTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="A run folder (runs/<name>).")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--shifts", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--reframe", type=float, nargs="+", default=[0.0], help="inference.reframe quantiles")
    parser.add_argument(
        "--reframe-weight", type=float, nargs="+", default=[0.75], help="inference.reframe_weight values"
    )
    args = parser.parse_args()

    from competition.config import InferenceConfig
    from competition.export import fold_models
    from competition.train import fold_reframe
    from competition.tta import predict_with_tta, shift_grid

    training = data.load_training(args.data)
    run = checked_run(args.run, training)
    frames = run.oof("tta")  # which rows each fold predicted
    models = {name: fold_models(run, name, allow_partial=True) for name in run.spec.specialists}
    print(
        f"{run.path}: {', '.join(f'{n} {sorted(m)}' for n, m in models.items())}, mirror axis {run.spec.mirror_axis:g}"
    )
    choices = [
        (shift, reframe, weight)
        for shift in args.shifts
        for reframe in args.reframe
        for weight in (args.reframe_weight if reframe else [0.0])
    ]
    for shift, reframe, weight in choices:
        started = time.perf_counter()
        predicted = {}
        for name, folds in models.items():
            frame = frames[name].copy()
            for fold, model in folds.items():
                rows = frame.index[frame["fold"] == fold].to_numpy()
                trained_on = frame.index[frame["fold"] != fold].to_numpy()
                inference = InferenceConfig(tta_shift=shift, reframe=reframe, reframe_weight=weight)
                _, tta = predict_with_tta(
                    model,
                    training.images[rows],
                    SPECIALISTS[name],
                    mirror_axis=run.spec.mirror_axis,
                    shift=shift,
                    reframe=fold_reframe(inference, training.keypoints[trained_on], SPECIALISTS[name]),
                )
                frame.loc[rows, list(SPECIALISTS[name].coordinates)] = tta
            predicted[name] = frame
        rows, stack = stack_predictions(predicted)
        rows = rows.to_numpy()
        fold = frames[run.spec.specialists[0]].loc[rows, "fold"].to_numpy()
        oof = OutOfFold(rows, stack, fold, training.keypoints[rows], training.style[rows])
        scores = score(oof.truth, oof.cross_fitted(unfitted_head(run)), oof.style)
        reframed = f", reframe {reframe:g} weight {weight:g}" if reframe else ""
        print(
            f"tta_shift {shift} ({2 * len(shift_grid(shift))} views){reframed}: "
            + ", ".join(f"{k} {v:.5f}" for k, v in scores.items())
            + f"; {time.perf_counter() - started:.0f} s for {len(rows)} faces",
            flush=True,
        )


if __name__ == "__main__":
    main()
