"""A config key's default and valid range, declared once beside the key (a dataclass field).

``setting(0.3, low=0, below=1)`` is a field whose values must lie in [0, 1); ``check`` refuses a
value outside it with one line naming the key. NaN and infinities are outside every range. Keras-free, so every
process can validate a config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection

from .errors import InputError


def setting(
    default,
    *,
    low=None,
    high=None,
    below=None,
    choices: Collection | None = None,
    divides: int | None = None,
    nonempty: bool = False,
):
    """A dataclass field with its valid range: ``low`` <= value (<= ``high``, or < ``below``), one of
    ``choices``, a divisor of ``divides``; for a list, every item (and ``nonempty``)."""
    given = {"low": low, "high": high, "below": below, "choices": choices, "divides": divides, "nonempty": nonempty}
    rules = {key: value for key, value in given.items() if value is not None and value is not False}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=rules)
    return dataclasses.field(default=default, metadata=rules)


def describe(rules: dict) -> str:
    """The range in words: 'at least 1', 'within 0..1', 'one of a, b', ..."""
    parts = []
    if "choices" in rules:
        parts.append(f"one of {', '.join(map(str, rules['choices']))}")
    if "divides" in rules:
        parts.append(f"a whole divisor of {rules['divides']}")
    low, high, below = rules.get("low"), rules.get("high"), rules.get("below")
    if low is not None and high is not None:
        parts.append(f"within {low}..{high}")
    elif low is not None and below is not None:
        parts.append(f"at least {low} and below {below}")
    elif low is not None:
        parts.append(f"at least {low}")
    return " and ".join(parts)


def _fits(value, rules: dict) -> bool:
    if "choices" in rules and value not in rules["choices"]:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if "low" in rules and not value >= rules["low"]:
        return False
    if "high" in rules and not value <= rules["high"]:
        return False
    if "below" in rules and not value < rules["below"]:
        return False
    return "divides" not in rules or (value >= 1 and rules["divides"] % value == 0)


def check(value, rules: dict, key: str, source: str) -> None:
    """Refuse ``value`` (or, for a list, any of its items) outside the key's range, naming the key."""
    if not rules:
        return
    items = value if isinstance(value, list) else [value]
    if rules.get("nonempty") and not items:
        raise InputError(source, f"key {key!r} must not be empty")
    for item in items:
        if not _fits(item, rules):
            shown = f"{item!r} in {value!r}" if isinstance(value, list) else repr(value)
            raise InputError(source, f"key {key!r} must be {describe(rules)}, got {shown}")
