"""Cross-validation scores computed like the leaderboard.

Kaggle scores the RMSE over exactly the coordinates IdLookupTable asks for: a face's labelled
coordinates, whichever annotation style it has. Out-of-fold, a face's labelled coordinates are
its known ones; the partial specialist answers for the 8 partial coordinates, the full
specialist for the other 22.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .schema import COORDINATES, KEYPOINTS, PARTIAL_COORDINATES, specialist_for

PARTIAL_COLUMNS = np.array([COORDINATES.index(c) for c in PARTIAL_COORDINATES])


def rmse(truth: np.ndarray, prediction: np.ndarray) -> float:
    """RMSE over the labelled (non-NaN) entries of ``truth``, pooled."""
    labelled = ~np.isnan(truth)
    if not labelled.any():
        return float("nan")
    return float(np.sqrt(np.mean((prediction[labelled] - truth[labelled]) ** 2)))


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


def read_oof(run_dir: Path, tta: bool, specialists: Iterable[str]) -> dict[str, pd.DataFrame]:
    """Each specialist's out-of-fold predictions (flip-TTA ones if ``tta``), indexed by row."""
    frames = {name: read_predictions(run_dir / name, "oof_tta.csv" if tta else "oof.csv", "row") for name in specialists}
    for name, frame in frames.items():
        if frame.empty:
            raise InputError(run_dir / name, "no finished fold: run `fkp cv` first")
    return frames


def leaderboard_mix(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All 30 coordinates, each from the specialist that owns it, on the keys every specialist has."""
    keys = frames["full"].index
    for frame in frames.values():
        keys = keys.intersection(frame.index)
    return pd.DataFrame({c: frames[specialist_for(c, frames)].loc[keys, c] for c in COORDINATES}, index=keys)


OOF_VARIANTS = ("no TTA", "flip TTA", "used")


def oof_variants(run_dir: Path, used: dict[str, bool]) -> dict[str, pd.DataFrame]:
    """A run's leaderboard-mixed out-of-fold predictions (row x 30 coordinates, plus each row's fold)
    without TTA, with flip TTA, and as ``used`` per specialist (the run's); each prediction file read once."""
    plain, flipped = read_oof(run_dir, tta=False, specialists=used), read_oof(run_dir, tta=True, specialists=used)
    chosen = {name: flipped[name] if flag else plain[name] for name, flag in used.items()}
    variants = {}
    for label, frames in zip(OOF_VARIANTS, (plain, flipped, chosen)):
        mixed = leaderboard_mix(frames)
        variants[label] = mixed.assign(fold=frames["full"].loc[mixed.index, "fold"])
    return variants


def cv_table(truth: np.ndarray, full_oof: np.ndarray, combined: np.ndarray) -> pd.DataFrame:
    """RMSE per keypoint: full specialist alone, partial specialist (its 4), and the leaderboard mix."""
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
