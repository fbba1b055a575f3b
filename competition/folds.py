"""K-fold splits, built once and stored, reused by every command.

Stratified by annotation style (full- vs partial-label) so each fold holds both specialists'
faces in the data's proportion, and grouped by identical pixels so a face repeated in the
download never sits on both sides of a split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import TrainingSet
from .errors import InputError
from .io import read_json, write_csv, write_json
from .schema import IMAGE_SIZE, MIRROR_AXIS, MIRROR_AXIS_OVERRIDE


@dataclass(frozen=True)
class Folds:
    fold: np.ndarray  # (N,) fold of each training row
    k: int
    seed: int
    fingerprint: str  # of the training set they were built for
    style: np.ndarray  # (N,) annotation style of each training row, stored beside its fold
    mirror_axis: float | None = None  # estimated on this data (`fkp folds --estimate-mirror-axis`)

    @property
    def flip_axis(self) -> float:
        """The axis flips mirror labels about (x -> axis - x): keypoints.toml's ``mirror_axis`` if set, else the
        one estimated on this data and stored with the folds, else that of 1-based pixel centres (97)."""
        if MIRROR_AXIS_OVERRIDE is not None:
            return MIRROR_AXIS_OVERRIDE
        return MIRROR_AXIS if self.mirror_axis is None else self.mirror_axis

    def validation_rows(self, k: int) -> np.ndarray:
        return np.flatnonzero(self.fold == k)

    def training_rows(self, k: int) -> np.ndarray:
        return np.flatnonzero(self.fold != k)

    def head(self, n: int | None) -> Folds:
        """The folds of the first ``n`` rows (for --limit smoke runs): same assignment, fewer rows."""
        if n is None:
            return self
        return Folds(self.fold[:n], self.k, self.seed, self.fingerprint, self.style[:n], self.mirror_axis)


def make_folds(training: TrainingSet, k: int, seed: int) -> Folds:
    """Folds of the training set's faces as Kaggle's files hold them (``TrainingSet.source``): the user's
    corrections change labels, not faces, and a run with them is split as one without them."""
    training = training.source
    from sklearn.model_selection import StratifiedGroupKFold  # imported once folds are built, not by every command

    _, groups = np.unique(training.images.reshape(len(training), -1), axis=0, return_inverse=True)
    faces = groups.max() + 1
    if not 2 <= k <= faces:
        raise InputError(
            "--folds", f"need at least 2 folds and at most {faces} (the distinct faces there are), got {k}"
        )
    if not 0 <= seed < 2**32:
        raise InputError("--seed", f"must be within 0..{2**32 - 1}, got {seed}")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    style = training.style
    fold = np.empty(len(training), np.int64)
    with warnings.catch_warnings():  # a style with fewer faces than folds is expected in a small sample
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        try:
            for index, (_, validation) in enumerate(splitter.split(training.images, style, groups.ravel())):
                fold[validation] = index
        except ValueError as error:  # more folds than some annotation style has faces
            raise InputError("--folds", f"cannot split these {len(training)} faces into {k} folds: {error}") from None
    return Folds(fold, k, seed, training.fingerprint, style)


def folds_path(folds_dir: Path, dataset: str, k: int) -> Path:
    """One stored split per data folder and K: ``folds/<data folder>-k<K>.csv``."""
    return folds_dir / f"{dataset}-k{k}.csv"


def save_folds(folds: Folds, path: Path) -> None:
    """The CSV (training row -> fold, with its style) and a JSON of what it was built from."""
    write_csv(pd.DataFrame({"row": np.arange(len(folds.fold)), "fold": folds.fold, "style": folds.style}), path)
    axis = {} if folds.mirror_axis is None else {"mirror_axis": folds.mirror_axis}
    write_json(
        {"k": folds.k, "seed": folds.seed, "faces": len(folds.fold), "fingerprint": folds.fingerprint, **axis},
        path.with_suffix(".json"),
    )


def load_folds(path: Path, training: TrainingSet) -> Folds:
    """Stored folds, refused with the reason when they were built for other data (other than Kaggle's files: the
    user's corrections do not change the folds, ``make_folds``)."""
    training = training.source
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise InputError(path, "no stored folds: run `fkp folds`")
    meta = read_json(meta_path)
    frame = pd.read_csv(path)
    if list(frame.columns) != ["row", "fold", "style"] or len(frame) != meta["faces"]:
        raise InputError(path, "damaged: expected columns row,fold,style and one row per training face")
    if meta["fingerprint"] != training.fingerprint or meta["faces"] != len(training):
        raise InputError(
            path,
            f"built for another training set ({meta['faces']} faces, fingerprint {meta['fingerprint']}); "
            f"this one has {len(training)} faces, fingerprint {training.fingerprint}: "
            "rebuild with `fkp folds --overwrite` or pick another --folds-dir",
        )
    style = frame["style"].to_numpy().astype(str)
    if not (style == training.style).all():
        row = int(np.flatnonzero(style != training.style)[0])
        raise InputError(
            path,
            f"style {str(style[row])!r} of training row {row} is not the style of its labels "
            f"({str(training.style[row])!r}): rebuild with `fkp folds --overwrite`",
            line=row + 2,
            column="style",
        )
    axis = meta.get("mirror_axis")
    if axis is not None and (
        isinstance(axis, bool) or not isinstance(axis, (int, float)) or not 0 < axis < 2 * IMAGE_SIZE
    ):
        raise InputError(meta_path, f"damaged: mirror_axis is {axis!r}, not a number of pixels")
    return Folds(frame["fold"].to_numpy(), int(meta["k"]), int(meta["seed"]), meta["fingerprint"], style, axis)


def folds_for(training: TrainingSet, path: Path, k: int, seed: int) -> tuple[Folds, bool]:
    """The stored folds at ``path``, built and saved first if missing; True if just built."""
    if path.exists():
        folds = load_folds(path, training)
        if folds.k != k:
            raise InputError(path, f"holds {folds.k} folds, not {k}: rebuild with `fkp folds --folds {k} --overwrite`")
        return folds, False
    folds = make_folds(training, k, seed)
    save_folds(folds, path)
    return folds, True
