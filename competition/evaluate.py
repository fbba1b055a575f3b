"""Cross-validation scores computed like the leaderboard.

Kaggle scores the RMSE over exactly the coordinates IdLookupTable asks for: a face's labelled
coordinates, whichever annotation style it has. Out-of-fold, a face's labelled coordinates are
its known ones; the partial specialist answers for the 8 partial coordinates, the full
specialist for the other 22.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .schema import COORDINATES, KEYPOINTS, PARTIAL_COORDINATES, SPECIALISTS

PARTIAL_COLUMNS = np.array([COORDINATES.index(c) for c in PARTIAL_COORDINATES])


def rmse(truth: np.ndarray, prediction: np.ndarray) -> float:
    """RMSE over the labelled (non-NaN) entries of ``truth``, pooled."""
    labelled = ~np.isnan(truth)
    if not labelled.any():
        return float("nan")
    return float(np.sqrt(np.mean((prediction[labelled] - truth[labelled]) ** 2)))


def combine(full: np.ndarray, partial: np.ndarray) -> np.ndarray:
    """(N, 30) full-specialist predictions with the partial specialist's 8 coordinates put in."""
    combined = full.copy()
    combined[:, PARTIAL_COLUMNS] = partial
    return combined


def per_keypoint_rmse(truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """RMSE of each keypoint over its x and y, for faces where it is labelled."""
    return {k: rmse(truth[:, 2 * i : 2 * i + 2], prediction[:, 2 * i : 2 * i + 2]) for i, k in enumerate(KEYPOINTS)}


def read_predictions(specialist_dir: Path, filename: str, key: str) -> pd.DataFrame:
    """The predictions of every finished fold of one specialist, indexed by ``key`` (row/ImageId)."""
    frames = [pd.read_csv(path).assign(fold=int(path.parent.name.removeprefix("fold")))
              for path in sorted(specialist_dir.glob(f"fold*/{filename}"))]
    if not frames:
        return pd.DataFrame(columns=[key, "fold"]).set_index(key)
    return pd.concat(frames).set_index(key).sort_index()


def load_oof(run_dir: Path, tta: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows both specialists have out-of-fold predictions for; full (n, 30) and partial (n, 8) ones."""
    filename = "oof_tta.csv" if tta else "oof.csv"
    full = read_predictions(run_dir / "full", filename, "row")
    partial = read_predictions(run_dir / "partial", filename, "row")
    rows = np.intersect1d(full.index.to_numpy(), partial.index.to_numpy())
    return (
        rows,
        full.loc[rows, list(SPECIALISTS["full"].coordinates)].to_numpy(),
        partial.loc[rows, list(PARTIAL_COORDINATES)].to_numpy(),
    )


def cv_table(truth: np.ndarray, full_oof: np.ndarray, partial_oof: np.ndarray) -> pd.DataFrame:
    """RMSE per keypoint: full specialist alone, partial specialist (its 4), and the leaderboard mix."""
    combined = combine(full_oof, partial_oof)
    partial_only = np.full_like(truth, np.nan)
    partial_only[:, PARTIAL_COLUMNS] = truth[:, PARTIAL_COLUMNS]
    table = pd.DataFrame(
        {
            "full": per_keypoint_rmse(truth, full_oof),
            "partial": per_keypoint_rmse(partial_only, combined),
            "leaderboard": per_keypoint_rmse(truth, combined),
            "labelled faces": {k: int((~np.isnan(truth[:, 2 * i])).sum()) for i, k in enumerate(KEYPOINTS)},
        }
    )
    table.loc["overall"] = [rmse(truth, full_oof), rmse(partial_only, combined), rmse(truth, combined),
                            len(truth)]
    return table.astype({"labelled faces": int})
