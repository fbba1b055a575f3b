"""A run folder, and the only code that knows its layout.

```
runs/<run>/run.json, config.toml         RunSpec: format, data fingerprint, folds, config
runs/<run>/head.json                     the fitted inference head (``head.RunHead``), per variant
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
import shutil
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
from .head import RunHead
from .io import atomic_path, create_exclusive, read_json, write_json, write_toml
from .schema import COORDINATES, SPECIALISTS

FORMAT = 2  # run.json's format: a run folder of another format is refused, to be trained again
VARIANTS = ("plain", "tta")  # predictions as the model makes them, and averaged over every TTA view
VARIANT_LABELS = {"plain": "no TTA", "tta": "TTA"}
_KEYS = {"oof": "row", "test": "ImageId"}  # what indexes out-of-fold and test predictions
_FILES = {
    ("oof", "plain"): "oof.csv",
    ("oof", "tta"): "oof_tta.csv",
    ("test", "plain"): "test.csv",
    ("test", "tta"): "test_tta.csv",
}
_MODEL, _HISTORY, _CONFIG, _FOLD, _LOGS, _HEAD = (
    "model.keras",
    "history.csv",
    "config.toml",
    "fold.json",
    "logs",
    "head.json",
)
EXPORT_FORMATS = {"keras": "model.keras", "saved_model": "saved_model", "onnx": "model.onnx"}  # `fkp export` formats


@dataclass(frozen=True)
class RunSpec:
    """What makes a run's folds comparable: same data, same folds, same config, same subset."""

    fingerprint: str
    folds: int
    fold_seed: int
    limit: int | None
    config: dict
    mirror_axis: float  # what flips mirrored x about
    format: int = FORMAT

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        """run.json, refused with one line when it is another format's or not a spec's fields of their types."""
        record = read_json(path)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            found = record.get("format", 1) if isinstance(record, dict) else "unknown"
            raise InputError(
                path,
                f"a run of format {found}, made by another version of fkp (this one reads format "
                f"{FORMAT}): train it again with `fkp cv` (into a new --run, or after deleting it)",
            )
        types = {
            "fingerprint": str,
            "folds": int,
            "fold_seed": int,
            "limit": (int, type(None)),
            "config": dict,
            "mirror_axis": (int, float),
            "format": int,
        }
        if set(record) != set(types):
            raise InputError(path, f"damaged: expected the keys {', '.join(types)}, got {', '.join(record)}")
        wrong = next(
            (key for key, kind in types.items() if not isinstance(record[key], kind) or isinstance(record[key], bool)),
            None,
        )
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
        """The spec with its config resolved, for comparing with another."""
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
        raise InputError(
            path,
            f"{str(frame.iat[row, column])!r} is not a {kind} number: delete the fold and rerun `fkp cv`",
            line=int(row) + 2,
            column=str(frame.columns[column]),
        )
    repeated = np.flatnonzero(frame.iloc[:, 0].duplicated().to_numpy())
    if len(repeated):
        raise InputError(
            path,
            f"damaged: {columns[0]} {frame.iat[repeated[0], 0]} appears twice",
            line=int(repeated[0]) + 2,
            column=columns[0],
        )
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
        return sorted(
            int(path.name.removeprefix("fold"))
            for path in (self.path / specialist).glob("fold*")
            if path.is_dir() and path.name.removeprefix("fold").isdigit()
        )

    def claim_fold(self, specialist: str, fold: int) -> AbstractContextManager[Claim]:
        """Claim a fold for training it (``claims.claimed``): ours, or the live holder's."""
        return claimed(self.path / specialist / f"fold{fold}.claim")

    def training_logs_dir(self, specialist: str, fold: int) -> Path:
        """Where a fold's TensorBoard logs go while it trains; ``write_fold`` moves them into the fold."""
        return self.path / specialist / f"fold{fold}.logs"

    def discard_unfinished(self, specialist: str, fold: int) -> None:
        """Remove what an interrupted attempt at a fold left: its training logs and a fold folder half-written
        under its temporary name (a finished fold, renamed into place, is kept)."""
        shutil.rmtree(self.training_logs_dir(specialist, fold), ignore_errors=True)
        folder = self.fold_dir(specialist, fold)
        for partial in folder.parent.glob(f".{folder.name}.*.tmp"):
            shutil.rmtree(partial, ignore_errors=True)

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
        frames = [
            _read_predictions(self.predictions_path(kind, variant, specialist, fold), columns).assign(fold=fold)
            for fold in self.finished_folds(specialist)
        ]
        if not frames:
            return pd.DataFrame(columns=[key, "fold"]).set_index(key)
        predictions = pd.concat(frames).set_index(key)
        if kind == "oof" and predictions.index.has_duplicates:
            twice = predictions[predictions.index.duplicated()].iloc[0]
            raise InputError(
                self.predictions_path(kind, variant, specialist, int(twice["fold"])),
                f"damaged: row {twice.name} is out of fold in another fold too",
            )
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
        return {
            name: {fold: self.history(name, fold) for fold in self.finished_folds(name)}
            for name in self.spec.specialists
        }

    def history(self, specialist: str, fold: int) -> pd.DataFrame:
        """One finished fold's per-epoch metrics."""
        return pd.read_csv(self.fold_dir(specialist, fold) / _HISTORY)

    def models(self, specialist: str) -> dict[int, Path]:
        """The saved model of each finished fold of a specialist."""
        return {fold: self.fold_dir(specialist, fold) / _MODEL for fold in self.finished_folds(specialist)}

    def fold_reports(self, specialist: str) -> dict[int, dict]:
        """Each finished fold's fold.json."""
        return {fold: read_json(self.fold_dir(specialist, fold) / _FOLD) for fold in self.finished_folds(specialist)}

    def missing_folds(self, specialist: str) -> list[int]:
        """The folds of the run's split that a specialist has not finished."""
        return sorted(set(range(self.spec.folds)) - set(self.finished_folds(specialist)))

    def export_path(self, format: str) -> Path:
        """Where `fkp export` writes the whole run as one model in ``format`` (a key of EXPORT_FORMATS)."""
        return self.path / "export" / EXPORT_FORMATS[format]

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    @property
    def report_path(self) -> Path:
        return self.path / "report.md"

    def tta_used(self, tta: bool | None) -> bool:
        """Whether the run's TTA predictions are used: ``tta`` if given, else its config's inference.tta."""
        return self.spec.resolved.inference.tta if tta is None else tta

    def usable_folds(self, specialist: str, allow_partial: bool) -> list[int]:
        """A specialist's finished folds, refused in one line when some are missing (unless ``allow_partial``)
        or none is."""
        missing = self.missing_folds(specialist)
        if missing and not allow_partial:
            raise InputError(
                self.path / specialist,
                f"folds {missing} of {self.spec.folds} are missing: finish them "
                "with `fkp cv --fold K` or pass --allow-partial",
            )
        if len(missing) == self.spec.folds:
            raise InputError(self.path / specialist, "no finished fold: run `fkp cv` first")
        return self.finished_folds(specialist)

    def fold_average(self, specialist: str, variant: str, allow_partial: bool) -> pd.DataFrame:
        """One specialist's test predictions averaged over its finished folds, indexed by ImageId; a run with
        unfinished folds is refused unless ``allow_partial``."""
        self.usable_folds(specialist, allow_partial)
        predictions = self.test(variant, [specialist])[specialist]
        finished = predictions["fold"].unique()
        per_face = predictions.groupby(level=0)["fold"].nunique()
        if (per_face < len(finished)).any():
            image_id = per_face.index[per_face < len(finished)][0]
            fold = sorted(set(finished) - set(predictions.loc[[image_id], "fold"]))[0]
            raise InputError(
                self.predictions_path("test", variant, specialist, fold),
                f"no prediction for test ImageId {image_id}, which other folds predict: delete the fold "
                "and rerun `fkp cv`",
            )
        with np.errstate(over="ignore"):  # a mean that overflows is refused by check_submission, in one line
            return predictions.drop(columns="fold").groupby(level=0).mean()

    def oof_stack(self, variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The head's input out of fold: the training rows every trained specialist has predicted, the
        specialists' predictions on them (S, N, 30), NaN outside each one's coordinates, and each row's fold."""
        frames = self.oof(variant)
        rows, stack = stack_predictions(frames)
        return rows.to_numpy(), stack, next(iter(frames.values())).loc[rows, "fold"].to_numpy()

    def test_stack(self, variant: str, allow_partial: bool) -> tuple[pd.Index, np.ndarray]:
        """The head's input on the test faces: their ImageIds and each specialist's fold average (S, N, 30)."""
        return stack_predictions(
            {name: self.fold_average(name, variant, allow_partial) for name in self.spec.specialists}
        )

    @property
    def head_path(self) -> Path:
        return self.path / _HEAD

    def write_head(self, heads: dict[str, RunHead]) -> None:
        """The fitted head of each variant, with the folds it was fitted on."""
        write_json(
            {
                "folds": {name: self.finished_folds(name) for name in self.spec.specialists},
                "heads": {variant: head.to_dict() for variant, head in heads.items()},
            },
            self.head_path,
        )

    def head(self, variant: str) -> RunHead:
        """The run's fitted head of ``variant``, refused when folds finished after it was fitted."""
        path = self.head_path
        if not path.exists():
            raise InputError(
                path,
                "missing: rerun the `fkp cv` command that made the run (finished folds are "
                "skipped) to fit its inference head",
            )
        record = read_json(path)
        finished = {name: self.finished_folds(name) for name in self.spec.specialists}
        try:
            fitted_on, head = record["folds"], RunHead.from_dict(record["heads"][variant])
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(
                path, f"damaged ({type(error).__name__}: {error}): rerun `fkp cv` on the run to fit it again"
            ) from None
        if fitted_on != finished:
            raise InputError(
                path,
                f"fitted on the folds {fitted_on}, but {finished} are finished: rerun the "
                "`fkp cv` command that made the run (finished folds are skipped) to refit it",
            )
        return head


def stack_predictions(frames: dict[str, pd.DataFrame]) -> tuple[pd.Index, np.ndarray]:
    """Specialists' predictions (name -> keys x its coordinates) as the head's input: the keys every one of them
    predicted, and their predictions on those keys (S, N, 30), NaN outside each one's coordinates."""
    keys = next(iter(frames.values())).index
    for frame in frames.values():
        keys = keys.intersection(frame.index)
    stack = np.full((len(frames), len(keys), len(COORDINATES)), np.nan)
    for s, (name, frame) in enumerate(frames.items()):
        stack[s][:, SPECIALISTS[name].columns] = frame.loc[keys, list(SPECIALISTS[name].coordinates)].to_numpy()
    return keys, stack


def variant(tta: bool) -> str:
    """The predictions ``tta`` picks: "tta" (averaged over the TTA views: mirror, shifts, re-framing) or "plain"."""
    return "tta" if tta else "plain"


def tta_words(tta: bool) -> str:
    return VARIANT_LABELS[variant(tta)]


def checked_run(run_dir: Path, training) -> Run:
    """A run, refused when it was trained on other data than ``training``."""
    run = Run(run_dir)
    if run.spec.fingerprint != training.fingerprint:
        if run.spec.fingerprint == training.source_fingerprint:
            raise InputError(
                run.spec_path,
                f"trained on Kaggle's labels without the {training.corrections} corrections --data applies "
                "(corrections.csv): train a run on the corrected labels with `fkp cv --run NAME`",
            )
        raise InputError(
            run.spec_path,
            f"trained on other data (fingerprint {run.spec.fingerprint}) than --data holds ({training.fingerprint})",
        )
    return run
