"""`fkp show`: a run's pictures (validation faces, learning curves, RMSE per keypoint) and report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data import TrainingSet
from .errors import InputError
from .evaluate import face_errors, keypoint_scores, oof_answers, score
from .io import write_text
from .plots import FacePanel, face_grid, keypoint_bars, learning_curves, save_png
from .run import VARIANT_LABELS, Run, checked_run, tta_words, variant
from .schema import COORDINATES

FIGURES = {
    "validation_faces": "Validation faces, worst and median by RMSE: truth (rings) joined to predictions (dots); "
    "orange the subject's left, blue the subject's right, green the centre line",
    "learning_curves": "Learning curves per fold and specialist: training (dashed) and validation (solid) RMSE",
    "rmse_per_keypoint": "Out-of-fold RMSE per keypoint, leaderboard-style, without (grey) and with (purple) "
    "TTA; keypoint names coloured by side",
}


def worst_and_median(errors: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the ``count`` worst faces (worst first) and of ``count`` faces around the median."""
    scored = np.flatnonzero(~np.isnan(errors))
    ranked = scored[np.argsort(-errors[scored], kind="stable")]
    worst = ranked[:count]
    start = max(len(worst), min(len(ranked) // 2 - count // 2, len(ranked) - count))
    return worst, ranked[start : start + count]


def show_run(run_dir: Path, training: TrainingSet, *, tta: bool | None = None, faces: int = 8) -> list[Path]:
    """Write a run's plots/<figure>.png and report.md; return their paths."""
    run = checked_run(run_dir, training)
    training = training.head(run.spec.limit)
    used = run.tta_used(tta)
    variants = {key: oof_answers(run, key, training) for key in VARIANT_LABELS}
    oof = variants[variant(used)]
    if oof.empty:
        raise InputError(
            run.path, "no face has out-of-fold predictions from every specialist of the run: finish a fold"
        )
    rows = oof.index.to_numpy()
    predicted, truth, style = oof[list(COORDINATES)].to_numpy(), training.keypoints[rows], training.style[rows]
    errors = face_errors(truth, predicted)
    scored = np.where(np.isnan(truth), np.nan, predicted)  # draw what the leaderboard would score
    worst, median = worst_and_median(errors, faces)
    panels = [
        FacePanel(training.images[rows[i]], scored[i], truth[i], f"{label}: row {rows[i]}, RMSE {errors[i]:.2f}")
        for positions, label in ((worst, "worst"), (median, "median"))
        for i in positions
    ]
    paths = {stem: run.plots_dir / f"{stem}.png" for stem in FIGURES}
    save_png(
        face_grid(
            panels,
            f"run {run.name}: out-of-fold predictions ({tta_words(used)}), "
            f"{len(worst)} worst then {len(median)} median faces",
        ),
        paths["validation_faces"],
    )
    save_png(learning_curves(run.histories()), paths["learning_curves"])

    table = pd.DataFrame(
        {
            label: keypoint_scores(truth, variants[key].loc[rows, list(COORDINATES)].to_numpy(), style)["all faces"]
            for key, label in VARIANT_LABELS.items()
        }
    )
    save_png(
        keypoint_bars(table, f"run {run.name}: out-of-fold RMSE per keypoint ({len(rows)} faces)"),
        paths["rmse_per_keypoint"],
    )

    write_text(run_report(run, table, score(truth, predicted, style), used, len(rows)), run.report_path)
    return [*paths.values(), run.report_path]


def run_report(run: Run, table: pd.DataFrame, by_style: pd.Series, used: bool, faces: int) -> str:
    spec = run.spec
    limit = f", first {spec.limit} faces" if spec.limit else ""
    lines = [
        f"# Run {run.name}",
        "",
        f"Config {spec.config['name']}; {spec.folds} folds (seed {spec.fold_seed}){limit}; "
        f"data fingerprint {spec.fingerprint}.",
        "",
        f"Out-of-fold RMSE, leaderboard-style, on {faces} faces: no TTA {table.loc['overall', 'no TTA']:.4f}, "
        f"TTA {table.loc['overall', 'TTA']:.4f}; `fkp blend` uses {tta_words(used)}.",
        "",
        f"By annotation style ({tta_words(used)}, each face over its labelled coordinates): "
        + ", ".join(f"{label} {value:.4f}" for label, value in by_style.items())
        + ".",
        "",
        "## Figures",
        "",
    ]
    for stem, caption in FIGURES.items():
        lines += [f"- [{stem}.png](plots/{stem}.png): {caption}.", "", f"![{stem}](plots/{stem}.png)", ""]
    return "\n".join(lines)
