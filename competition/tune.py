"""`fkp tune`: a Keras Tuner search per specialist on one fold, its best hyperparameters written as a config.

The search space is a TOML file in configs/search/. A trial is made of `fkp cv`'s own fold stages
(``train.prepare_fold``, ``build_fold_model``, ``train_stage``) on the fold's training faces, scored
on its validation faces, so it trains exactly like a `fkp cv` fold with the trial's settings. Trials live in
Keras Tuner's project folder ``runs/tune/<project>/<specialist>/``: re-running the same command
reloads the oracle and continues; Keras Tuner's chief/worker mode spreads trials over machines.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import typing
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .claims import Claim, claimed
from .config import SHARED_TABLES, Config, SpecialistConfig, find_config, read_toml, resolve, resolve_specialist
from .cv import job_minutes
from .data import TrainingSet
from .errors import InputError
from .folds import Folds
from .io import claim_record, write_toml
from .jobs import fold_seed
from .keras_tuner_compat import keras_tuner as kt
from .machine import fresh_backend_session
from .models import FAMILIES, family_config
from .schema import SPECIALISTS
from .train import PreparedFold, budgeted, build_fold_model, prepare_fold, train_stage

OBJECTIVE = "val_rmse"  # PixelRMSE on the validation faces, in pixels
TUNERS = {"bayesian": kt.BayesianOptimization, "random": kt.RandomSearch, "hyperband": kt.Hyperband}
CHIEF = "chief"  # Keras Tuner's tuner id for the process that runs the oracle
# Search keys that are not config keys, and the type of their values.
DERIVED = {"model.blocks": int, "model.base_filters": int, "augment.strength": float}
FAMILY = "model.family"  # searched among FAMILIES; the other model keys must belong to every family searched
AUGMENT_RANGES = ("rotate", "scale", "shift", "brightness", "contrast")  # what augment.strength scales
_SPEC_KEYS = {"values", "min", "max", "step", "sampling", "default"}


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    params: dict[str, dict]  # "section.key" -> {"values": [...]} or {"min": .., "max": .., ...}
    families: tuple[str, ...]  # the model families its trials build


def _search_key_type(name: str, source: str, base: SpecialistConfig, families: tuple[str, ...]) -> type:
    """The type of a searchable key's values (a model key in each of ``families``); unknown and unsearchable
    keys are refused."""
    if name in DERIVED:
        return DERIVED[name]
    if name == FAMILY:
        return str
    section, _, key = name.partition(".")
    tables = [family_config(family) for family in families] if section == "model" else [getattr(base, section)]
    for table in tables:
        hints = typing.get_type_hints(type(table))
        if key not in hints:
            known = sorted(
                [f"{section}.{k}" for k, t in hints.items() if t in (int, float, bool)]
                + [d for d in DERIVED if d.startswith(f"{section}.")]
            )
            family = f" of the {table.family} family" if section == "model" else ""
            raise InputError(
                source,
                f"unknown hyperparameter {name!r}{family} (known in [search.{section}]{family}: {', '.join(known)})",
            )
        if hints[key] not in (int, float, bool):
            raise InputError(
                source, f"hyperparameter {name!r} cannot be searched: use model.blocks and model.base_filters"
            )
    return hints[key]


def _fits(value, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    return isinstance(value, expected) or (expected is float and isinstance(value, int))


def _declare(hp: kt.HyperParameters, name: str, spec: dict, kind: type):
    """Declare one hyperparameter (or read its value in a trial)."""
    if kind is bool:  # Keras Tuner's Choice would turn true/false into 1/0
        return hp.Boolean(name, default=spec.get("default", spec["values"][0]))
    if "values" in spec:
        return hp.Choice(name, spec["values"], default=spec.get("default"))
    declare = hp.Int if kind is int else hp.Float
    return declare(
        name,
        spec["min"],
        spec["max"],
        step=spec.get("step"),
        sampling=spec.get("sampling", "linear"),
        default=spec.get("default"),
    )


def load_search_space(name_or_path: str, base: SpecialistConfig) -> SearchSpace:
    """A search space by path, or by name in ./configs/search or the project's configs/search/, checked
    against the keys of ``base`` (the settings it varies)."""
    path = find_config(name_or_path, "search")
    source = str(path)
    raw = read_toml(path)
    if set(raw) != {"search"} or not isinstance(raw["search"], dict):
        raise InputError(path, f"expected only a [search] table, found {sorted(raw) or 'nothing'}")
    params = {}
    families = _searched_families(path, raw["search"], base)
    for section, table in raw["search"].items():
        if section not in SHARED_TABLES or not isinstance(table, dict):
            raise InputError(path, f"[search.{section}] is not a table of one of {sorted(SHARED_TABLES)}")
        for key, spec in table.items():
            name = f"{section}.{key}"
            kind = _search_key_type(name, source, base, families)
            if not isinstance(spec, dict) or set(spec) - _SPEC_KEYS:
                raise InputError(path, f"{name} must be a table of {sorted(_SPEC_KEYS)}")
            if ("values" in spec) == ("min" in spec or "max" in spec) or ("min" in spec) != ("max" in spec):
                raise InputError(path, f"{name} needs either values = [...] or both min and max")
            if "values" in spec:
                if not isinstance(spec["values"], list) or not spec["values"]:
                    raise InputError(path, f"{name}: values must be a non-empty list")
                candidates = spec["values"]
            elif kind is bool:
                raise InputError(path, f"{name} is true or false: search it with values = [true, false]")
            else:
                candidates = [spec.get("min"), spec.get("max"), *([spec["step"]] if "step" in spec else [])]
            for value in candidates:
                if not _fits(value, kind):
                    raise InputError(path, f"{name} takes {kind.__name__} values, got {value!r}")
            if kind is bool and sorted(candidates) != [False, True]:
                raise InputError(path, f"{name}: search it with values = [true, false], or set it in the base config")
            try:
                _declare(kt.HyperParameters(), name, spec, kind)
            except (ValueError, TypeError) as error:
                raise InputError(path, f"{name}: {error}") from None
            params[name] = spec
    if not params:
        raise InputError(path, "the [search] table names no hyperparameter")
    return SearchSpace(path, params, families)


def _searched_families(path: Path, search: dict, base: SpecialistConfig) -> tuple[str, ...]:
    """The families a space's ``model.family = { values = [...] }`` names (checked), else the base's."""
    model = search.get("model")
    spec = model.get("family") if isinstance(model, dict) else None
    if spec is None:
        return (base.model.family,)
    values = spec.get("values") if isinstance(spec, dict) else None
    if not isinstance(values, list) or not values or set(spec) - {"values", "default"}:
        raise InputError(path, f"{FAMILY} must be a table with values = [...] of {', '.join(FAMILIES)}")
    unknown = [value for value in values if value not in FAMILIES]
    if unknown:
        raise InputError(path, f"{FAMILY}: unknown family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    return tuple(values)


def declare(hp: kt.HyperParameters, space: SearchSpace, base: SpecialistConfig) -> dict:
    """Declare the space's hyperparameters on ``hp``; their values in this trial."""
    return {
        name: _declare(hp, name, spec, _search_key_type(name, str(space.path), base, space.families))
        for name, spec in space.params.items()
    }


def tuned_section(base: SpecialistConfig, values: dict) -> dict:
    """A specialist's config table ({enabled, model, augment, train}): the base config with ``values``
    applied, enabled so that `fkp cv` trains it. A searched ``model.family`` other than the base's starts
    from that family's defaults and keeps the base's values of the keys the two families share."""
    section = {**dataclasses.asdict(base), "enabled": True}  # a deep copy
    family = values.get(FAMILY, base.model.family)
    if family != base.model.family:
        fresh = dataclasses.asdict(family_config(family))
        section["model"] = {**fresh, **{k: v for k, v in section["model"].items() if k in fresh and k != "family"}}
    model, augment = section["model"], section["augment"]
    if "model.blocks" in values or "model.base_filters" in values:
        blocks = values.get("model.blocks", len(model["filters"]))
        first = values.get("model.base_filters", model["filters"][0])
        model["filters"] = [first * 2**block for block in range(blocks)]
    if "augment.strength" in values:
        for key in AUGMENT_RANGES:
            augment[key] = round(augment[key] * values["augment.strength"], 6)
    for name, value in values.items():
        if name not in DERIVED:
            table, _, key = name.partition(".")
            section[table][key] = value
    return section


def tuned_settings(base: SpecialistConfig, values: dict) -> SpecialistConfig:
    """The settings a trial trains with, checked (ints widened to floats) like a config file's table."""
    return resolve_specialist(tuned_section(base, values), "search")


class SpecialistHyperModel(kt.HyperModel):
    """One specialist's model over a search space, trained on one fold like a `fkp cv` fold."""

    def __init__(self, name: str, base: Config, space: SearchSpace, training: TrainingSet, folds: Folds, fold: int):
        super().__init__(name=f"{name}_fold{fold}")
        self.specialist, self.base, self.space = name, base.specialist(name), space
        self.training, self.folds, self.fold = training, folds, fold
        self.seed = fold_seed(base, fold)
        self.minutes = job_minutes(base, folds.k)  # a trial trains as long as its fold would in `fkp cv`
        prepared = self.prepare(self.base)  # refuses a fold without faces before any trial
        self.train_faces, self.val_faces = len(prepared.train_rows), len(prepared.val_rows)

    def settings(self, hp: kt.HyperParameters) -> SpecialistConfig:
        return tuned_settings(self.base, declare(hp, self.space, self.base))

    def prepare(self, settings: SpecialistConfig) -> PreparedFold:
        return prepare_fold(self.specialist, self.fold, settings, self.training, self.folds, self.seed)

    @property
    def identity(self) -> dict[str, str | int]:
        """What every trial of the search is made on: the data and the fold split. Declared as fixed
        hyperparameters, so the chief's oracle holds them and a worker can check it shares them."""
        return {
            "fkp.fingerprint": self.training.fingerprint,
            "fkp.faces": len(self.training),
            "fkp.folds": self.folds.k,
            "fkp.fold_seed": self.folds.seed,
            "fkp.fold": self.fold,
        }

    def build(self, hp):
        fresh_backend_session(clear=False)  # Keras Tuner clears the session; each trial's model traces anew
        settings = self.settings(hp)
        for name, value in self.identity.items():
            hp.Fixed(name, value)
        return build_fold_model(self.prepare(settings), settings)

    def fit(self, hp, model, *, epochs: int, callbacks=(), initial_epoch: int = 0, log_prefix: str = ""):
        settings = budgeted(self.settings(hp), self.minutes)
        started = time.perf_counter()
        # the oracle and Keras Tuner's callbacks read the objective after every epoch
        train = dataclasses.replace(settings.train, validate_every=1)
        history = train_stage(
            model,
            self.prepare(settings),
            train,
            epochs=epochs,
            log_prefix=log_prefix,
            callbacks=callbacks,
            initial_epoch=initial_epoch,
        )
        seconds = time.perf_counter() - started
        trained = len(history.history["loss"])
        print(
            f"{log_prefix} best {OBJECTIVE} {np.nanmin(history.history[OBJECTIVE]):.4f} after {trained} epochs, "
            f"{seconds:.0f}s, {trained * self.train_faces / seconds:.0f} faces/s",
            flush=True,
        )
        return history


class _TrialLog:
    """Mixed into a Keras Tuner tuner: names each trial in its epoch lines and reports failed ones."""

    def run_trial(self, trial, *args, **kwargs):
        prefix = f"[{self.hypermodel.specialist} trial {trial.trial_id} on {self.tuner_id}]"
        return super().run_trial(trial, *args, log_prefix=prefix, **kwargs)

    def on_trial_end(self, trial):
        if trial.status != "COMPLETED":
            reason = (trial.message or "").strip().splitlines()[-1:] or ["no message"]
            print(f"[{self.hypermodel.specialist} trial {trial.trial_id}] {trial.status}: {reason[0]}", flush=True)
        super().on_trial_end(trial)


LOGGED_TUNERS = {key: type(f"Logged{cls.__name__}", (_TrialLog, cls), {}) for key, cls in TUNERS.items()}


@dataclass(frozen=True)
class SearchSpec:
    """What makes a search's trials comparable; a project refuses to continue with another spec."""

    specialist: str
    fingerprint: str
    folds: int
    fold_seed: int
    fold: int
    limit: int | None
    tuner: str
    epochs: int
    space: dict
    base: dict

    def claim(self, project_dir: Path, overwrite: bool) -> None:
        """Start the project afresh (``overwrite``), or continue one made with this same spec."""
        if overwrite and project_dir.exists():
            shutil.rmtree(project_dir)
        claim_record(
            project_dir / "search.json",
            dataclasses.asdict(self),
            "pick another --project or pass --overwrite to start over",
        )


def check_chief_shares(chief_space: kt.HyperParameters, identity: dict) -> None:
    """Refuse to run a worker's trials on other data or folds than the chief's (what its oracle's space
    holds of ``identity``)."""
    recorded = chief_space.values
    differs = [
        f"{name.removeprefix('fkp.')} {recorded.get(name, 'not recorded')} (this worker: {value})"
        for name, value in identity.items()
        if recorded.get(name) != value
    ]
    if differs:
        raise InputError(
            "--chief",
            f"the chief searches other data or folds: {'; '.join(differs)}: give every "
            "worker the chief's --data, --folds, --fold and --limit",
        )


def project_claim(directory: Path, role: str | None) -> AbstractContextManager[Claim | None]:
    """The claim on a search's project that the process serving its oracle holds while it searches
    (alone, or as the chief): a worker holds none."""
    return claimed(directory.with_name(f"{directory.name}.claim")) if role in (None, CHIEF) else nullcontext()


def distribution_env(chief: str | None, worker: str | None) -> dict[str, str]:
    """Keras Tuner's chief/worker variables for ``--chief HOST:PORT`` and ``--worker ID``."""
    if chief is None:
        if worker is not None:
            raise InputError("--worker", "a worker needs --chief HOST:PORT, the address of the chief's oracle")
        return {}
    host, _, port = chief.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError("--chief", f"expected HOST:PORT, got {chief!r}")
    if worker is not None and (not worker or CHIEF in worker):
        raise InputError("--worker", f"worker ID {worker!r} must be non-empty and not contain {CHIEF!r}")
    return {
        "KERASTUNER_TUNER_ID": CHIEF if worker is None else f"worker-{worker}",
        "KERASTUNER_ORACLE_IP": host,
        "KERASTUNER_ORACLE_PORT": port,
    }


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block."""
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def specialist_settings(base: Config, name: str) -> SpecialistConfig:
    """The base config's settings of the specialist to tune."""
    if name not in SPECIALISTS:
        raise InputError("--specialist", f"unknown specialist {name!r} (known: {', '.join(SPECIALISTS)})")
    return base.specialist(name)


def project_dir(runs_dir: Path, project: str, specialist: str) -> Path:
    return runs_dir / "tune" / project / specialist


def run_search(
    name: str,
    base: Config,
    space: SearchSpace,
    training: TrainingSet,
    folds: Folds,
    *,
    fold: int,
    tuner: str,
    max_trials: int,
    epochs: int | None,
    directory: Path,
    limit: int | None = None,
    overwrite: bool = False,
    distribution: dict[str, str] | None = None,
    log=print,
    serving=None,
):
    """Run (or continue) one specialist's search; the Keras Tuner tuner, its trials done. ``serving`` (a
    ``threading.Event``) is set once the project is claimed and recorded, as the search starts.

    ``epochs`` per trial (Hyperband: the most) defaults to the base config's ``train.epochs``.
    """
    specialist_settings(base, name)
    if tuner not in TUNERS:
        raise InputError("--tuner", f"unknown tuner {tuner!r} (known: {', '.join(TUNERS)})")
    if not 0 <= fold < folds.k:
        raise InputError("--fold", f"fold {fold} does not exist: folds are 0..{folds.k - 1}")
    epochs = base.specialist(name).train.epochs if epochs is None else epochs
    if max_trials < 1 or epochs < 1:
        raise InputError("--max-trials" if max_trials < 1 else "--epochs", "must be at least 1")
    spec = SearchSpec(
        name,
        training.fingerprint,
        folds.k,
        folds.seed,
        fold,
        limit,
        tuner,
        epochs,
        space.params,
        dataclasses.asdict(base.specialist(name)),
    )
    distribution = distribution or {}
    role = distribution.get("KERASTUNER_TUNER_ID")
    address = f"{distribution.get('KERASTUNER_ORACLE_IP')}:{distribution.get('KERASTUNER_ORACLE_PORT')}"
    with project_claim(directory, role) as claim, environment(distribution):
        if claim is not None and not claim.ours:
            raise InputError(
                directory,
                f"being searched by {claim.holder} since {claim.holder.since}: wait for it "
                f"to end or pick another --project (if that process is gone, delete "
                f"{claim.path})",
            )
        spec.claim(directory, overwrite)
        hypermodel = SpecialistHyperModel(name, base, space, training, folds, fold)
        log(
            f"[{name}] searching {len(space.params)} hyperparameters of {space.path} with {tuner}: "
            f"{hypermodel.train_faces} training and {hypermodel.val_faces} validation faces of fold {fold}, "
            f"up to {max_trials} trials of {epochs} epochs; trials in {directory}"
        )
        budget = {"max_epochs": epochs} if tuner == "hyperband" else {"max_trials": max_trials}
        searcher = LOGGED_TUNERS[tuner](
            hypermodel,
            objective=kt.Objective(OBJECTIVE, "min"),
            seed=base.seed,
            directory=str(directory.parent),
            project_name=directory.name,
            **budget,
        )
        if role is None or role == CHIEF:  # a worker's oracle is the chief's, reached over gRPC
            searcher.oracle.max_trials = max_trials  # Hyperband budgets epochs: cap its trials too
            done = len(searcher.oracle.trials)
            if done:
                log(f"[{name}] continuing the search in {directory}: {done} trials recorded")
        if serving is not None:
            serving.set()
        if role == CHIEF:
            log(f"[{name}] chief: serving the oracle on {address} until the workers finish the trials")
        elif role is not None:
            log(f"[{name}] {role}: asking the chief at {address} for trials")
            check_chief_shares(searcher.oracle.get_space(), hypermodel.identity)
        searcher.search(epochs=epochs)
    return searcher


def best_trials(searcher, space: SearchSpace, count: int = 5) -> pd.DataFrame:
    """The best completed trials, best first, one column each: validation RMSE, best epoch, settings."""
    columns = {}
    for trial in searcher.oracle.get_best_trials(count):
        values = trial.hyperparameters.values
        columns[f"trial {trial.trial_id}"] = {
            OBJECTIVE: float(trial.score),
            "best epoch": int(trial.best_step) + 1,
            **{
                name: f"{values[name]:.4g}" if isinstance(values[name], float) else str(values[name])
                for name in space.params
            },
        }
    return pd.DataFrame(columns, dtype=object)


def tuned_config_path(name_or_path: str) -> Path:
    """Where ``--out`` writes: a path as given, or a name in ./configs."""
    path = Path(name_or_path)
    return path if path.suffix == ".toml" or len(path.parts) > 1 else Path("configs") / f"{name_or_path}.toml"


def write_tuned_config(path: Path, name: str, section: dict, base: Config) -> None:
    """Write (or update) ``name``'s table of a config file, keeping the other specialist's as it is. A new
    file starts from the search's base config, so `fkp cv --config tuned` trains what the base trained
    (a specialist the base turned off stays off) and predicts as it did."""
    if path.exists():
        raw = read_toml(path)
    else:
        raw = {key: value for key, value in base.to_dict().items() if key != "name"}
    raw.setdefault("specialists", {})[name] = section
    resolve(raw, str(path))
    write_toml(
        raw, path, header=f"# Best hyperparameters found by `fkp tune`; train with them: fkp cv --config {path.stem}\n"
    )


def save_best(searcher, space: SearchSpace, name: str, base: Config, path: Path) -> dict:
    """Write the best trial's settings as ``name``'s table of the config at ``path``; its values."""
    best = searcher.oracle.get_best_trials(1)
    if not best:
        raise InputError(searcher.project_dir, "no completed trial: nothing to write")
    values = {key: best[0].hyperparameters.values[key] for key in space.params}
    write_tuned_config(path, name, tuned_section(base.specialist(name), values), base)
    return values
