"""`fkp show`: a run's pictures (validation faces, learning curves, RMSE per keypoint) and report.md."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .blend import read_run, tta_choice, tta_words
from .data import TrainingSet
from .errors import InputError
from .evaluate import oof_variants, per_keypoint_rmse, rmse
from .io import write_text
from .plots import FacePanel, face_grid, keypoint_bars, learning_curves, save_png
from .schema import COORDINATES

FIGURES = {
    "validation_faces": "Validation faces, worst and median by RMSE: truth (rings) joined to predictions (dots); "
                        "orange the subject's left, blue the subject's right, green the centre line",
    "learning_curves": "Learning curves per fold and specialist: training (dashed) and validation (solid) RMSE",
    "rmse_per_keypoint": "Out-of-fold RMSE per keypoint, leaderboard-style, without (grey) and with (purple) "
                         "flip TTA; keypoint names coloured by side",
}


def face_errors(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each face's RMSE over its labelled coordinates (NaN for a face with none)."""
    labelled = ~np.isnan(truth)
    squared = np.where(labelled, (predicted - np.where(labelled, truth, 0)) ** 2, 0).sum(axis=1)
    counts = labelled.sum(axis=1)
    return np.sqrt(np.divide(squared, counts, out=np.full(len(truth), np.nan), where=counts > 0))


def worst_and_median(errors: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the ``count`` worst faces (worst first) and of ``count`` faces around the median."""
    scored = np.flatnonzero(~np.isnan(errors))
    ranked = scored[np.argsort(-errors[scored], kind="stable")]
    worst = ranked[:count]
    start = max(len(worst), min(len(ranked) // 2 - count // 2, len(ranked) - count))
    return worst, ranked[start : start + count]


def _histories(run_dir: Path, specialists: Iterable[str]) -> dict[str, dict[int, pd.DataFrame]]:
    return {
        name: {int(path.parent.name.removeprefix("fold")): pd.read_csv(path)
               for path in sorted((run_dir / name).glob("fold*/history.csv"))}
        for name in specialists
    }


def show_run(run_dir: Path, training: TrainingSet, *, tta: bool | None = None, faces: int = 8) -> list[Path]:
    """Write a run's plots/<figure>.png and report.md; return their paths."""
    spec = read_run(run_dir, training)
    training = training.head(spec.limit)
    used = tta_choice(spec, tta)
    variants = oof_variants(run_dir, used)
    oof = variants["used"]
    if oof.empty:
        raise InputError(run_dir, "no face has out-of-fold predictions from every specialist of the run: finish a fold")
    rows = oof.index.to_numpy()
    predicted, truth = oof[list(COORDINATES)].to_numpy(), training.keypoints[rows]
    errors = face_errors(truth, predicted)
    scored = np.where(np.isnan(truth), np.nan, predicted)  # draw what the leaderboard would score
    worst, median = worst_and_median(errors, faces)
    panels = [
        FacePanel(training.images[rows[i]], scored[i], truth[i], f"{label}: row {rows[i]}, RMSE {errors[i]:.2f}")
        for positions, label in ((worst, "worst"), (median, "median")) for i in positions
    ]
    paths = {stem: run_dir / "plots" / f"{stem}.png" for stem in FIGURES}
    save_png(face_grid(panels, f"run {run_dir.name}: out-of-fold predictions ({tta_words(used)}), "
                               f"{len(worst)} worst then {len(median)} median faces"), paths["validation_faces"])
    save_png(learning_curves(_histories(run_dir, used)), paths["learning_curves"])

    scores = {}
    for label in ("no TTA", "flip TTA"):
        frame = variants[label].loc[rows, list(COORDINATES)].to_numpy()
        scores[label] = {**per_keypoint_rmse(truth, frame), "overall": rmse(truth, frame)}
    table = pd.DataFrame(scores)
    save_png(keypoint_bars(table, f"run {run_dir.name}: out-of-fold RMSE per keypoint ({len(rows)} faces)"),
             paths["rmse_per_keypoint"])

    report = run_dir / "report.md"
    write_text(run_report(run_dir.name, spec, table, used, len(rows)), report)
    return [*paths.values(), report]


def run_report(name: str, spec, table: pd.DataFrame, used: dict[str, bool], faces: int) -> str:
    limit = f", first {spec.limit} faces" if spec.limit else ""
    lines = [
        f"# Run {name}",
        "",
        f"Config {spec.config['name']}; {spec.folds} folds (seed {spec.fold_seed}){limit}; "
        f"data fingerprint {spec.fingerprint}.",
        "",
        f"Out-of-fold RMSE, leaderboard-style, on {faces} faces: no TTA {table.loc['overall', 'no TTA']:.4f}, "
        f"flip TTA {table.loc['overall', 'flip TTA']:.4f}; `fkp blend` uses {tta_words(used)}.",
        "",
        "## Figures",
        "",
    ]
    for stem, caption in FIGURES.items():
        lines += [f"- [{stem}.png](plots/{stem}.png): {caption}.", "", f"![{stem}](plots/{stem}.png)", ""]
    return "\n".join(lines)
