"""Experiment configs: TOML files in configs/, validated against these dataclasses.

A file's top-level [model], [augment] and [train] tables apply to every specialist;
[specialists.<name>.<table>] overrides them for one, and ``[specialists.<name>] enabled = false``
leaves one untrained. [inference] holds the choices made when predicting (TTA, which trained
specialist answers a coordinate). ``--set model.dropout=0.2`` overrides from the CLI (every
specialist), ``--set specialists.full.model.dropout=0.2`` one. Each key's valid range is declared
beside it (``ranges.setting``). Every run writes the resolved config (each specialist spelt out)
beside its artifacts.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from . import ranges
from .errors import InputError
from .head import SecondStage
from .models import FAMILIES, ModelConfig, family_config
from .ranges import setting
from .schema import COORDINATES, SMALLEST_FIRST, SPECIALISTS, STYLES

PROJECT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SCHEDULES = ("plateau", "cosine")


@dataclass
class AugmentConfig:
    flip: float = setting(0.5, low=0, high=1)  # probability of a mirrored face (labels swapped left/right)
    rotate: float = setting(12.0, low=0, high=180)  # degrees, either way
    scale: float = setting(0.08, low=0, below=1)  # relative, either way
    shift: float = setting(0.05, low=0, below=1)  # fraction of the image, either way
    brightness: float = setting(0.2, low=0, below=1)  # relative, either way
    contrast: float = setting(0.2, low=0, below=1)  # relative, either way
    # probability of re-framing a face: its eyes moved and scaled to a framing drawn uniformly within the
    # training labels' range of eye distance and position (rare framings: tiny faces in a corner, close-ups)
    framing: float = setting(0.0, low=0, high=1)
    # 0: re-framing draws uniformly within that range; > 0: it copies the framing of one of this fraction of
    # training faces whose framings are the most unusual (their own tails of face size and position)
    framing_rarest: float = setting(0.0, low=0, high=1)
    # probability that a re-framed face keeps its drawn eye distance but has its eye midpoint drawn uniformly over
    # the image (one eye distance from each edge): small faces are then seen in corners that no training face of
    # the fold shows, as the data's makers placed some
    framing_anywhere: float = setting(0.0, low=0, high=1)
    # the annotation styles whose faces may be re-framed (a face's style read from its labels)
    framing_styles: list[str] = setting(list(STYLES), choices=tuple(STYLES), nonempty=True)


@dataclass
class TrainConfig:
    epochs: int = setting(200, low=1, high=100_000)
    batch_size: int = setting(64, low=1, high=4096)
    learning_rate: float = setting(1e-3, low=1e-12, high=10.0)  # the peak one, with the cosine schedule
    # decoupled weight decay (AdamW's) of the kernels, not of biases or batch-norm scales (0: none)
    weight_decay: float = setting(0.0, low=0, high=1.0)
    # plateau: halve the rate when val RMSE stalls; cosine: warm up, decay to 0 by `epochs`
    schedule: str = setting("plateau", choices=SCHEDULES)
    warmup_epochs: int = setting(2, low=0, high=100_000)  # cosine: epochs of linear warm-up from 0
    patience: int = setting(25, low=1, high=100_000)  # epochs without a better validation RMSE before stopping
    lr_patience: int = setting(
        8, low=1, high=100_000
    )  # plateau: epochs without improvement before the learning rate halves
    min_learning_rate: float = setting(1e-5, low=0, high=10.0)  # plateau: the floor of the halving
    max_minutes: float = setting(
        0.0, low=0, high=60 * 24 * 7
    )  # wall-clock budget of one specialist's fold (0: none); best weights kept
    workers: int = setting(1, low=1, high=64)  # PyDataset workers preparing augmented batches
    # cosine only: score the validation faces every this many epochs and on the stage's last one (1: every epoch);
    # the best weights are chosen among the scored epochs
    validate_every: int = setting(1, low=1, high=100_000)

    def check(self, source: str, key: str) -> None:
        """Refuse settings that are each in range but do not work together (one line naming ``key``)."""
        if self.validate_every > 1 and self.schedule != "cosine":
            raise InputError(
                source,
                f"key '{key}.validate_every' above 1 needs the cosine schedule: "
                "the plateau schedule's patience counts epochs, validated or not",
            )


@dataclass
class SpecialistConfig:
    """One specialist's settings: whether `fkp cv` trains it, and its model, augmentation and training."""

    enabled: bool = True
    model: ModelConfig = field(default_factory=lambda: family_config("regression"))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class InferenceConfig:
    """Choices made when predicting, not when training."""

    tta: bool = True  # average each prediction with its mirror's
    # with tta, also at each whole-pixel shift of the 3x3 grid {-tta_shift, 0, tta_shift}^2 (0: the face alone);
    # read when a fold predicts, so it is fixed in the run's TTA predictions
    tta_shift: int = setting(0, low=0, high=16)
    # with tta, a face whose predicted framing (eye distance, eye-line angle, eye midpoint) lies outside the
    # [q, 1 - q] quantiles of the fold's training faces' is moved the least way into them and predicted again
    # (0: off); its points, mapped back, weigh `reframe_weight` in the face's prediction
    reframe: float = setting(0.0, low=0, below=0.5)
    reframe_weight: float = setting(0.75, low=0, high=1)
    # Which trained specialist answers a coordinate: the first of this order that predicts it.
    prefer: list[str] = setting(list(SMALLEST_FIRST), choices=tuple(SPECIALISTS))
    # Per annotation style, the specialist that scores best out of fold on that style's faces answers a
    # coordinate instead (a test face's style read from IdLookupTable); `prefer` breaks ties
    prefer_by_style: bool = False
    # A second stage fitted on the run's out-of-fold errors (head.SecondStage): "offsets" adds each
    # coordinate's mean error, "linear" its error regressed on all 30 predicted coordinates; "none" leaves the
    # predictions as they are. In CV each fold's faces take the fit on the other folds' faces
    refine: str = setting("none", choices=("none", *SecondStage.KINDS))
    refine_alpha: float = setting(20.0, low=0, high=1e9)  # "linear": the ridge penalty per labelled face


@dataclass
class DistillConfig:
    """A run distilled from a blend of runs (`fkp cv` with `distill.teachers`): each fold trains on its training
    faces' labels and, where a face lacks a coordinate, on the answer of the teachers' blend made without that
    fold's faces."""

    teachers: list[str] = setting([])  # the blended runs, by name in the runs folder (none: no distillation)
    filled_weight: float = setting(0.25, low=0, high=1)  # a filled coordinate's weight in the loss; a label's is 1


@dataclass
class Config:
    name: str = "default"
    seed: int = setting(42, low=0, high=2**31 - 1)
    # wall-clock minutes of a whole `fkp cv`, shared by its fold jobs (0: none; cv.Budget); a fold's
    # cosine is planned to end within its share, so `train.epochs` is then a ceiling
    budget_minutes: float = setting(0.0, low=0, high=60 * 24 * 7)
    # One table per specialist named in keypoints.toml.
    specialists: dict[str, SpecialistConfig] = field(
        default_factory=lambda: {name: SpecialistConfig() for name in SPECIALISTS}
    )
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    @property
    def trained(self) -> list[str]:
        """The specialists `fkp cv` trains, in keypoints.toml's order."""
        return [name for name, settings in self.specialists.items() if settings.enabled]

    def specialist(self, name: str) -> SpecialistConfig:
        return self.specialists[name]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SHARED_TABLES = tuple(f.name for f in dataclasses.fields(SpecialistConfig) if f.name != "enabled")


def find_config(name_or_path: str, kind: str = "") -> Path:
    """A config file by path, or by name in ./configs/<kind> or the project's configs/<kind>."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or len(path.parts) > 1:
        if not path.is_file():
            raise InputError(path, "config file not found")
        return path
    for folder in (Path("configs") / kind, PROJECT_CONFIGS / kind):
        if (folder / f"{name_or_path}.toml").is_file():
            return folder / f"{name_or_path}.toml"
    known = sorted(p.stem for p in (PROJECT_CONFIGS / kind).glob("*.toml"))
    raise InputError(Path("configs", kind, f"{name_or_path}.toml"), f"config not found (known: {', '.join(known)})")


def read_toml(path: Path) -> dict:
    """A TOML file's tables, or one line naming the file and the syntax error."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(path, f"not UTF-8 text: byte {error.start} is {error.object[error.start]:#04x}") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(path, f"not valid TOML: {error}") from None


def _check_type(value, expected, key: str, source: str):
    """``value`` if it fits the annotation ``expected`` (ints widen to float), else an InputError."""
    origin = typing.get_origin(expected)
    if origin is list:
        (item,) = typing.get_args(expected)
        if isinstance(value, list):
            return [_check_type(v, item, key, source) for v in value]
    elif expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    name = expected.__name__ if isinstance(expected, type) else str(expected)
    raise InputError(source, f"key {key!r} must be {name}, got {type(value).__name__} {value!r}")


def _apply(target, table, prefix: str, source: str) -> None:
    """Set dataclass ``target``'s fields from ``table``, refusing unknown keys, wrong types and values
    outside a key's range. A model table's ``family`` picks the dataclass of the rest."""
    if not isinstance(table, dict):
        raise InputError(source, f"key {prefix.rstrip('.')!r} must be a table")
    hints = typing.get_type_hints(type(target))
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if key not in hints or key == "specialists":
            known = ", ".join(name for name in hints if name != "specialists")
            raise InputError(source, f"unknown key {dotted!r} (known here: {known})")
        expected = hints[key]
        if expected is ModelConfig:
            if not isinstance(value, dict):
                raise InputError(source, f"key {dotted!r} must be a table")
            family = value.get("family", target.model.family)
            if family not in FAMILIES:
                raise InputError(source, f"key '{dotted}.family' must be one of {', '.join(FAMILIES)}, got {family!r}")
            if family != target.model.family:
                target.model = family_config(family)
            _apply(target.model, value, f"{dotted}.", source)
        elif dataclasses.is_dataclass(expected):
            _apply(getattr(target, key), value, f"{dotted}.", source)
        else:
            value = _check_type(value, expected, dotted, source)
            ranges.check(value, fields[key].metadata, dotted, source)
            setattr(target, key, value)


def resolve(raw: dict, source: str) -> Config:
    """A Config from a parsed TOML document: top-level keys, then the shared tables into every
    specialist, then each specialist's own tables."""
    raw = copy.deepcopy(raw)
    config = Config()
    shared = {key: raw.pop(key) for key in list(raw) if key in SHARED_TABLES}
    per_specialist = raw.pop("specialists", {})
    _apply(config, raw, "", source)
    if not isinstance(per_specialist, dict):
        raise InputError(source, "key 'specialists' must be a table of " + ", ".join(SPECIALISTS))
    unknown = set(per_specialist) - set(SPECIALISTS)
    if unknown:
        raise InputError(
            source,
            f"unknown specialist {sorted(unknown)[0]!r} under 'specialists' "
            f"(keypoints.toml has {', '.join(SPECIALISTS)})",
        )
    for name, settings in config.specialists.items():
        _apply(settings, shared, "", source)
        _apply(settings, per_specialist.get(name, {}), f"specialists.{name}.", source)
        settings.model.check(source, f"specialists.{name}.model")
        settings.train.check(source, f"specialists.{name}.train")
    _check_coverage(config, source)
    return config


def resolve_specialist(table: dict, source: str) -> SpecialistConfig:
    """One specialist's settings from its table ({enabled, model, augment, train}), checked."""
    settings = SpecialistConfig()
    _apply(settings, table, "", source)
    return settings


def _check_coverage(config: Config, source: str) -> None:
    """Every coordinate must have a trained specialist, and each specialist a place in the preference."""
    covered = {c for name in config.trained for c in SPECIALISTS[name].coordinates}
    if covered != set(COORDINATES):
        raise InputError(
            source,
            f"the enabled specialists ({', '.join(config.trained) or 'none'}) must cover all "
            f"{len(COORDINATES)} coordinates: enable {', '.join(SPECIALISTS)} or more",
        )
    if sorted(config.inference.prefer) != sorted(SPECIALISTS):
        raise InputError(
            source,
            f"key 'inference.prefer' must name each of {', '.join(SPECIALISTS)} once, got {config.inference.prefer!r}",
        )


def parse_override(assignment: str) -> dict:
    """``a.b.c=VALUE`` (VALUE in TOML syntax; bare words are strings) -> nested dict."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise InputError("--set", f"expected KEY=VALUE, got {assignment!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    nested: dict = parsed
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def _merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """``--set KEY=VALUE`` on a resolved config: a shared table's key reaches every specialist."""
    resolved = config.to_dict()
    for assignment in overrides:
        update = parse_override(assignment)
        for table in set(update) & set(SHARED_TABLES):
            for settings in resolved["specialists"].values():
                _merge(settings[table], copy.deepcopy(update[table]))
            del update[table]
        _merge(resolved, update)
    return resolve(resolved, "--set")


def check_option(value, config_class, key: str, option: str) -> None:
    """Refuse a CLI option's value outside the range of the config key it sets, naming both."""
    field = next(f for f in dataclasses.fields(config_class) if f.name == key.rpartition(".")[2])
    ranges.check(value, field.metadata, key, option)


def load_config(name_or_path: str, overrides: list[str] = ()) -> Config:
    path = find_config(name_or_path)
    raw = read_toml(path)
    raw.setdefault("name", path.stem)
    config = resolve(raw, str(path))
    return apply_overrides(config, list(overrides)) if overrides else config


BLEND_METHODS = ("nnls", "ridge", "elasticnet")


@dataclass
class BlendConfig:
    """How `fkp blend` weighs its runs, per coordinate, on their out-of-fold predictions."""

    # nnls: scipy's non-negative least squares, no intercept; ridge / elasticnet: scikit-learn's
    method: str = setting("nnls", choices=BLEND_METHODS)
    alpha: float = setting(
        1.0, low=0, high=1e6
    )  # ridge / elasticnet regularisation strength, as scikit-learn defines it
    l1_ratio: float = setting(0.5, low=0, high=1)  # elasticnet's share of L1 in the penalty
    positive: bool = True  # ridge / elasticnet: keep the weights non-negative
    # weights per (annotation style, coordinate), each style's fitted on its faces; a test face takes its
    # style's, read from IdLookupTable. With it, even one run is fitted (a calibration per style)
    by_style: bool = False


def load_blend_config(name_or_path: str) -> BlendConfig:
    """A blend config by path or by name in configs/blend/, validated."""
    path = find_config(name_or_path, "blend")
    config = BlendConfig()
    _apply(config, read_toml(path), "", str(path))
    return config


@dataclass
class RecipeRun:
    """One `fkp cv` of a recipe: its run name, config and ``--set`` overrides."""

    name: str = ""  # the run's folder in --runs-dir
    config: str = ""  # a config name in configs/ or a TOML path
    set: list[str] = field(default_factory=list)  # --set KEY=VALUE overrides, as on the command line


@dataclass
class Recipe:
    """Several runs on the same folds and their blend: what `fkp recipe` trains, run by run, then blends."""

    folds: int = setting(5, low=2, high=100)  # every run's K: the same stored folds for all
    blend: str = "nnls"  # the blend config, a name in configs/blend/ or a TOML path
    runs: list[RecipeRun] = field(default_factory=list)


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe by path or by name in configs/recipes/, every run's config loaded with its overrides, so that a
    mistake in the last run is refused before the first one trains."""
    path = find_config(name_or_path, "recipes")
    raw = read_toml(path)
    tables = raw.pop("runs", None)
    recipe = Recipe()
    _apply(recipe, raw, "", str(path))
    if not isinstance(tables, list) or not tables:
        raise InputError(path, "needs at least one [[runs]] table (name, config, set)")
    for index, table in enumerate(tables):
        member, key = RecipeRun(), f"runs[{index}]"
        _apply(member, table, f"{key}.", str(path))
        if not member.name or member.name in (".", "..") or Path(member.name).name != member.name:
            raise InputError(path, f"key '{key}.name' must be a run's folder name, got {member.name!r}")
        if member.name in (run.name for run in recipe.runs):
            raise InputError(path, f"key '{key}.name': run {member.name!r} is named twice")
        if not member.config:
            raise InputError(path, f"key '{key}.config' is missing: a config name or TOML path")
        try:
            load_config(member.config, member.set)
        except InputError as error:
            raise InputError(path, f"run {member.name!r}: {error}") from None
        recipe.runs.append(member)
    try:
        load_blend_config(recipe.blend)
    except InputError as error:
        raise InputError(path, f"key 'blend': {error}") from None
    return recipe
