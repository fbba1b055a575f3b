"""Experiment configs: TOML files in configs/, validated against these dataclasses.

A file's [model], [augment] and [train] tables apply to both specialists; [full.<table>] and
[partial.<table>] override them for one. ``--set full.model.dropout=0.2`` overrides from the CLI.
Every run writes the resolved config (both specialists spelt out) beside its artifacts.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .schema import COORDINATES, IMAGE_SIZE, SPECIALISTS

PROJECT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class ModelConfig:
    filters: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # one conv block each
    convs_per_block: int = 2
    kernel_size: int = 3
    batch_norm: bool = True
    dropout: float = 0.3
    dense_units: int = 512
    input_downsample: int = 1  # average-pool the 96x96 face by this factor first (2: 48x48, a quarter of the FLOPs)


@dataclass
class AugmentConfig:
    flip: float = 0.5  # probability of a mirrored face (labels swapped left/right)
    rotate: float = 12.0  # degrees, either way
    scale: float = 0.08  # relative, either way
    shift: float = 0.05  # fraction of the image, either way
    brightness: float = 0.2  # relative, either way
    contrast: float = 0.2  # relative, either way


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 1e-3  # the peak one, with the cosine schedule
    schedule: str = "plateau"  # plateau: halve the rate when val RMSE stalls; cosine: warm up, decay to 0 by `epochs`
    warmup_epochs: int = 2  # cosine: epochs of linear warm-up from 0
    patience: int = 25  # epochs without a better validation RMSE before stopping
    lr_patience: int = 8  # plateau: epochs without improvement before the learning rate halves
    min_learning_rate: float = 1e-5  # plateau: the floor of the halving
    max_minutes: float = 0.0  # wall-clock budget of one specialist's fold (0: none); best weights kept
    workers: int = 1  # PyDataset workers preparing augmented batches
    tta: bool = True  # average each prediction with its mirror's


@dataclass
class SpecialistConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class Config:
    name: str = "default"
    seed: int = 42
    # The specialists trained; each coordinate is answered by the smallest one that predicts it.
    # ["full"] trains one network on every face for all 30 (half the training time of two).
    specialists: list[str] = field(default_factory=lambda: list(SPECIALISTS))
    full: SpecialistConfig = field(default_factory=SpecialistConfig)
    partial: SpecialistConfig = field(default_factory=SpecialistConfig)

    def specialist(self, name: str) -> SpecialistConfig:
        return getattr(self, name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {f.name for f in dataclasses.fields(SpecialistConfig)}


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
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise InputError(path, f"not valid TOML: {error}") from None


def _check(value, expected, key: str, source: str):
    """``value`` if it fits the annotation ``expected`` (ints widen to float), else an InputError."""
    origin = typing.get_origin(expected)
    if origin is list:
        (item,) = typing.get_args(expected)
        if isinstance(value, list):
            return [_check(v, item, key, source) for v in value]
    elif expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    name = expected.__name__ if isinstance(expected, type) else str(expected)
    raise InputError(source, f"key {key!r} must be {name}, got {type(value).__name__} {value!r}")


def _apply(target, table: dict, prefix: str, source: str) -> None:
    """Set dataclass ``target``'s fields from ``table``, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(type(target))
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(hints)
            raise InputError(source, f"unknown key {dotted!r} (known here: {known})")
        expected = hints[key]
        if dataclasses.is_dataclass(expected):
            if not isinstance(value, dict):
                raise InputError(source, f"key {dotted!r} must be a table")
            _apply(getattr(target, key), value, f"{dotted}.", source)
        else:
            setattr(target, key, _check(value, expected, dotted, source))


def resolve(raw: dict, source: str) -> Config:
    """A Config from a parsed TOML document (shared tables first, then per-specialist ones)."""
    raw = copy.deepcopy(raw)
    config = Config()
    shared = {key: raw.pop(key) for key in list(raw) if key in _SECTIONS}
    per_specialist = {key: raw.pop(key) for key in list(raw) if key in SPECIALISTS}
    _apply(config, raw, "", source)
    _check_specialists(config.specialists, source)
    for name in SPECIALISTS:
        _apply(config.specialist(name), shared, "", source)
        table = per_specialist.get(name, {})
        if not isinstance(table, dict):
            raise InputError(source, f"key {name!r} must be a table")
        _apply(config.specialist(name), table, f"{name}.", source)
        _check_choices(config.specialist(name), name, source)
    return config


SCHEDULES = ("plateau", "cosine")


def _check_specialists(names: list[str], source: str) -> None:
    unknown = [name for name in names if name not in SPECIALISTS]
    uncovered = set(COORDINATES) - {c for name in names if name in SPECIALISTS for c in SPECIALISTS[name].coordinates}
    if unknown or uncovered or len(set(names)) != len(names):
        raise InputError(source, f"key 'specialists' must name each of {', '.join(SPECIALISTS)} at most once and "
                                 f"cover all {len(COORDINATES)} coordinates, got {names!r}")


def _check_choices(settings: SpecialistConfig, name: str, source: str) -> None:
    """Refuse values that are the right type but not a known choice."""
    if settings.train.schedule not in SCHEDULES:
        raise InputError(source, f"key '{name}.train.schedule' must be one of {', '.join(SCHEDULES)}, "
                                 f"got {settings.train.schedule!r}")
    if settings.model.input_downsample < 1 or IMAGE_SIZE % settings.model.input_downsample:
        raise InputError(source, f"key '{name}.model.input_downsample' must divide {IMAGE_SIZE}, "
                                 f"got {settings.model.input_downsample}")


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


def load_config(name_or_path: str, overrides: list[str] = ()) -> Config:
    path = find_config(name_or_path)
    raw = read_toml(path)
    raw.setdefault("name", path.stem)
    config = resolve(raw, str(path))
    if overrides:
        # Overrides land on the resolved config, so a shared key reaches both specialists.
        resolved = config.to_dict()
        for assignment in overrides:
            update = parse_override(assignment)
            for section in set(update) & _SECTIONS:
                for name in SPECIALISTS:
                    update.setdefault(name, {}).setdefault(section, {})
                    _merge(update[name][section], update[section])
                del update[section]
            _merge(resolved, update)
        config = resolve(resolved, "--set")
    return config


BLEND_METHODS = ("nnls", "ridge", "elasticnet")


@dataclass
class BlendConfig:
    """How `fkp blend` weighs its runs, per coordinate, on their out-of-fold predictions."""

    method: str = "nnls"  # nnls: scipy's non-negative least squares, no intercept; ridge / elasticnet: scikit-learn's
    alpha: float = 1.0  # ridge / elasticnet regularisation strength, as scikit-learn defines it
    l1_ratio: float = 0.5  # elasticnet's share of L1 in the penalty
    positive: bool = True  # ridge / elasticnet: keep the weights non-negative


def load_blend_config(name_or_path: str) -> BlendConfig:
    """A blend config by path or by name in configs/blend/, validated."""
    path = find_config(name_or_path, "blend")
    raw = read_toml(path)
    config = BlendConfig()
    _apply(config, raw, "", str(path))
    if config.method not in BLEND_METHODS:
        raise InputError(path, f"key 'method' must be one of {', '.join(BLEND_METHODS)}, got {config.method!r}")
    if config.alpha < 0:
        raise InputError(path, f"key 'alpha' must be at least 0, got {config.alpha}")
    if not 0 <= config.l1_ratio <= 1:
        raise InputError(path, f"key 'l1_ratio' must be within 0..1, got {config.l1_ratio}")
    return config
