"""A run folder, and the only code that knows its layout.

```
runs/<run>/run.json, config.toml         RunSpec: data fingerprint, folds, config
runs/<run>/<specialist>/fold<k>/         one specialist on one fold, written whole:
    model.keras                          raw 96x96 faces in, pixel coordinates out
    oof.csv, oof_tta.csv                 out-of-fold predictions (row, coordinates), plain / TTA
    test.csv, test_tta.csv               test predictions (ImageId, coordinates)
    history.csv, config.toml, fold.json  per-epoch metrics, resolved config, FoldResult and counts
    logs/                                TensorBoard logs of its epochs (train/, validation/)
runs/<run>/<specialist>/fold<k>.claim.<n>   while a process trains the fold: its host and pid (``claims``)
runs/<run>/<specialist>/fold<k>.logs/       while the fold trains: its TensorBoard logs, moved into the fold
runs/<run>/plots/*.png, report.md        `fkp show`
runs/<run>/export/model.keras, saved_model/, model.onnx   `fkp export`: the whole run as one model
```

A fold folder is made under a temporary name and renamed when complete, so a folder that exists
is a finished fold and a killed run resumes at the next one; a fold is claimed before it trains, so
processes sharing a run never train the same fold. Keras-free: the process that holds the
data reads and writes runs without loading a backend.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from .claims import Claim, claimed
from .config import Config, resolve
from .errors import InputError
from .io import atomic_path, create_exclusive, read_json, write_toml
from .schema import MIRROR_AXIS, SPECIALISTS

VARIANTS = ("plain", "flip")  # predictions as the model makes them, and averaged over TTA views (mirror, shifts)
VARIANT_LABELS = {"plain": "no TTA", "flip": "TTA"}
_KEYS = {"oof": "row", "test": "ImageId"}  # what indexes out-of-fold and test predictions
_FILES = {("oof", "plain"): "oof.csv", ("oof", "flip"): "oof_tta.csv",
          ("test", "plain"): "test.csv", ("test", "flip"): "test_tta.csv"}
_MODEL, _HISTORY, _CONFIG, _FOLD, _LOGS = "model.keras", "history.csv", "config.toml", "fold.json", "logs"
EXPORT_FORMATS = {"keras": "model.keras", "saved_model": "saved_model", "onnx": "model.onnx"}  # `fkp export` formats


@dataclass(frozen=True)
class RunSpec:
    """What makes a run's folds comparable: same data, same folds, same config, same subset."""

    fingerprint: str
    folds: int
    fold_seed: int
    limit: int | None
    config: dict  # as recorded; runs made before today's config shape read through ``resolved``
    mirror_axis: float = MIRROR_AXIS  # what flips mirrored x about (runs made before it was recorded: 97)

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        """run.json, refused with one line when it is not a spec's fields of their types."""
        record = read_json(path)
        types = {"fingerprint": str, "folds": int, "fold_seed": int, "limit": (int, type(None)), "config": dict}
        optional = {"mirror_axis": (int, float)}  # recorded since the axis can be estimated on the data
        if not set(types) <= set(record) <= set(types) | set(optional):
            raise InputError(path, f"damaged: expected the keys {', '.join(types)} (and maybe "
                                   f"{', '.join(optional)}), got {', '.join(record)}")
        wrong = next((key for key, kind in {**types, **optional}.items() if key in record
                      and (not isinstance(record[key], kind) or isinstance(record[key], bool))), None)
        if wrong is not None:
            raise InputError(path, f"damaged: {wrong} is {record[wrong]!r}")
        return cls(**record)

    @cached_property
    def resolved(self) -> Config:
        return resolve(self.config, "run.json")

    @property
    def specialists(self) -> list[str]:
        """The specialists the run trains."""
        return self.resolved.trained

    def comparable(self) -> dict:
        """The spec with its config in today's shape, for comparing with another."""
        return {**asdict(self), "config": self.resolved.to_dict()}


@dataclass(frozen=True)
class FoldArtifacts:
    """Everything a trained fold leaves in the run."""

    model: object  # a Keras model (anything with ``save(path)``), or the bytes of its saved .keras file
    predictions: dict[tuple[str, str], pd.DataFrame]  # ("oof" | "test", variant) -> key column, then coordinates
    history: pd.DataFrame  # one row per epoch
    config: dict  # the resolved config it trained with
    report: dict  # fold.json: its FoldResult, face counts, backend
    logs: dict[str, bytes] = field(default_factory=dict)  # TensorBoard files by path, when written elsewhere


def _read_predictions(path: Path, columns: list[str]) -> pd.DataFrame:
    """A fold's predictions (``columns``: its key, then coordinates); other columns, a key that is not a
    whole number or a cell that is not a finite number is refused with its line and column, so a damaged
    fold never reaches a score or a submission."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(path, "missing: the fold folder is incomplete; delete it and rerun `fkp cv`") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(path, f"not a readable CSV ({str(error).strip()})") from None
    if list(frame.columns) != columns:
        raise InputError(path, f"damaged: its columns are not {columns[0]} and the specialist's coordinates", line=1)
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    finite = np.isfinite(values)
    finite[:, 0] &= (values[:, 0] == np.round(values[:, 0])) & (values[:, 0] >= 0)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        kind = "whole non-negative" if column == 0 else "finite"
        raise InputError(path, f"{str(frame.iat[row, column])!r} is not a {kind} number: delete the fold and rerun "
                               "`fkp cv`", line=int(row) + 2, column=str(frame.columns[column]))
    repeated = np.flatnonzero(frame.iloc[:, 0].duplicated().to_numpy())
    if len(repeated):
        raise InputError(path, f"damaged: {columns[0]} {frame.iat[repeated[0], 0]} appears twice",
                         line=int(repeated[0]) + 2, column=columns[0])
    return frame


class Run:
    """``runs/<name>/``: its spec, its folds' files, and the readers every command uses."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def spec_path(self) -> Path:
        return self.path / "run.json"

    @cached_property
    def spec(self) -> RunSpec:
        path = self.spec_path
        if not path.exists():
            raise InputError(self.path, "not a run folder (no run.json): run `fkp cv` first")
        return RunSpec.read(path)

    def claim(self, spec: RunSpec) -> None:
        """Record ``spec`` for a new run; refuse to add folds to a run made with another one. Of two
        processes starting the run at once, one records its spec and the other compares with it."""
        path = self.spec_path
        if create_exclusive(json.dumps(asdict(spec), indent=2), path):
            self.__dict__.pop("spec", None)
        else:
            recorded = self.spec.comparable()
            differs = [key for key, value in spec.comparable().items() if recorded[key] != value]
            if differs:
                raise InputError(path, f"made with other {', '.join(differs)}: pick another --run or delete the run")
        if not (self.path / _CONFIG).exists():
            write_toml(self.spec.config, self.path / _CONFIG)

    def fold_dir(self, specialist: str, fold: int) -> Path:
        return self.path / specialist / f"fold{fold}"

    def is_finished(self, specialist: str, fold: int) -> bool:
        return self.fold_dir(specialist, fold).exists()

    def finished_folds(self, specialist: str) -> list[int]:
        return sorted(int(path.name.removeprefix("fold")) for path in (self.path / specialist).glob("fold*")
                      if path.is_dir() and path.name.removeprefix("fold").isdigit())

    def claim_fold(self, specialist: str, fold: int) -> AbstractContextManager[Claim]:
        """Claim a fold for training it (``claims.claimed``): ours, or the live holder's."""
        return claimed(self.path / specialist / f"fold{fold}.claim")

    def training_logs_dir(self, specialist: str, fold: int) -> Path:
        """Where a fold's TensorBoard logs go while it trains; ``write_fold`` moves them into the fold."""
        return self.path / specialist / f"fold{fold}.logs"

    def logs_dir(self, specialist: str, fold: int) -> Path:
        """A finished fold's TensorBoard logs."""
        return self.fold_dir(specialist, fold) / _LOGS

    def write_fold(self, specialist: str, fold: int, artifacts: FoldArtifacts) -> Path:
        """Write one fold whole, with its training logs if any: a temporary folder renamed into place."""
        with atomic_path(self.fold_dir(specialist, fold), directory=True) as tmp:
            if self.training_logs_dir(specialist, fold).exists():
                self.training_logs_dir(specialist, fold).rename(tmp / _LOGS)
            for name, data in artifacts.logs.items():  # logs written where it trained (a cluster's worker)
                (tmp / _LOGS / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / _LOGS / name).write_bytes(data)
            if isinstance(artifacts.model, bytes):  # saved where it trained
                (tmp / _MODEL).write_bytes(artifacts.model)
            else:
                artifacts.model.save(tmp / _MODEL)
            for key, frame in artifacts.predictions.items():
                frame.to_csv(tmp / _FILES[key], index=False)
            artifacts.history.rename_axis("epoch").to_csv(tmp / _HISTORY)
            (tmp / _CONFIG).write_text(tomli_w.dumps(artifacts.config))
            (tmp / _FOLD).write_text(json.dumps(artifacts.report, indent=2))
        return self.fold_dir(specialist, fold)

    def predictions_path(self, kind: str, variant: str, specialist: str, fold: int) -> Path:
        """Where one fold keeps its ``kind`` ("oof" | "test") predictions of one ``variant``."""
        return self.fold_dir(specialist, fold) / _FILES[kind, variant]

    def _predictions(self, kind: str, variant: str, specialist: str) -> pd.DataFrame:
        """One specialist's predictions over its finished folds, indexed by row or ImageId, with their fold."""
        key = _KEYS[kind]
        columns = [key, *SPECIALISTS[specialist].coordinates]
        frames = [_read_predictions(self.predictions_path(kind, variant, specialist, fold), columns).assign(fold=fold)
                  for fold in self.finished_folds(specialist)]
        if not frames:
            return pd.DataFrame(columns=[key, "fold"]).set_index(key)
        predictions = pd.concat(frames).set_index(key)
        if kind == "oof" and predictions.index.has_duplicates:
            twice = predictions[predictions.index.duplicated()].iloc[0]
            raise InputError(self.predictions_path(kind, variant, specialist, int(twice["fold"])),
                             f"damaged: row {twice.name} is out of fold in another fold too")
        return predictions.sort_index()

    def oof(self, variant: str, specialists: list[str] | None = None) -> dict[str, pd.DataFrame]:
        """Each trained specialist's out-of-fold predictions, indexed by training row, with a fold column."""
        frames = {name: self._predictions("oof", variant, name) for name in specialists or self.spec.specialists}
        for name, frame in frames.items():
            if frame.empty:
                raise InputError(self.path / name, "no finished fold: run `fkp cv` first")
        return frames

    def test(self, variant: str, specialists: list[str] | None = None) -> dict[str, pd.DataFrame]:
        """Each trained specialist's test predictions of every finished fold, indexed by ImageId, with a fold column."""
        return {name: self._predictions("test", variant, name) for name in specialists or self.spec.specialists}

    def histories(self) -> dict[str, dict[int, pd.DataFrame]]:
        """Each trained specialist's per-epoch metrics, by fold."""
        return {name: {fold: self.history(name, fold) for fold in self.finished_folds(name)}
                for name in self.spec.specialists}

    def history(self, specialist: str, fold: int) -> pd.DataFrame:
        """One finished fold's per-epoch metrics."""
        return pd.read_csv(self.fold_dir(specialist, fold) / _HISTORY)

    def models(self, specialist: str) -> dict[int, Path]:
        """The saved model of each finished fold of a specialist."""
        return {fold: self.fold_dir(specialist, fold) / _MODEL for fold in self.finished_folds(specialist)}

    def fold_reports(self, specialist: str) -> dict[int, dict]:
        """Each finished fold's fold.json."""
        return {fold: read_json(self.fold_dir(specialist, fold) / _FOLD)
                for fold in self.finished_folds(specialist)}

    def missing_folds(self, specialist: str) -> list[int]:
        """The folds of the run's split that a specialist has not finished."""
        return sorted(set(range(self.spec.folds)) - set(self.finished_folds(specialist)))

    def export_path(self, format: str) -> Path:
        """Where `fkp export` writes the whole run as one model in ``format`` (a key of EXPORT_FORMATS: its file or folder name)."""
        return self.path / "export" / EXPORT_FORMATS[format]

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    @property
    def report_path(self) -> Path:
        return self.path / "report.md"
