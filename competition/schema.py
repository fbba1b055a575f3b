"""The keypoint schema (names, flip pairs, annotation styles, specialist subsets), read once from keypoints.toml."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

_SPEC = tomllib.loads(resources.files(__package__).joinpath("keypoints.toml").read_text())

IMAGE_SIZE: int = _SPEC["image_size"]
KEYPOINTS: tuple[str, ...] = tuple(_SPEC["keypoints"])
COORDINATES: tuple[str, ...] = tuple(f"{k}_{axis}" for k in KEYPOINTS for axis in "xy")
FLIP_PAIRS: tuple[tuple[str, str], ...] = tuple(tuple(p) for p in _SPEC["flip_pairs"])
# Labels put pixel column i's centre at i + FIRST_PIXEL_CENTRE, so a mirror maps x to MIRROR_AXIS - x.
FIRST_PIXEL_CENTRE: float = _SPEC["first_pixel_centre"]
MIRROR_AXIS: float = IMAGE_SIZE - 1 + 2 * FIRST_PIXEL_CENTRE
# An axis set by hand wins over the one estimated on the data and stored with the folds.
MIRROR_AXIS_OVERRIDE: float | None = _SPEC.get("mirror_axis")


@dataclass(frozen=True)
class KeypointSubset:
    """Some of the 15 keypoints, in schema order."""

    name: str
    keypoints: tuple[str, ...]

    @property
    def coordinates(self) -> tuple[str, ...]:
        return tuple(f"{k}_{axis}" for k in self.keypoints for axis in "xy")

    @property
    def columns(self) -> np.ndarray:
        """Indices of these coordinates among the 30 COORDINATES."""
        return np.array([COORDINATES.index(c) for c in self.coordinates])


class Style(KeypointSubset):
    """An annotation style: the keypoints its faces are labelled with and Kaggle asks for."""


class Specialist(KeypointSubset):
    """The keypoints that one CNN predicts."""

    @property
    def flip_permutation(self) -> np.ndarray:
        """For each output keypoint, the index of its mirror partner (itself if unpaired)."""
        partner = {k: k for k in self.keypoints}
        for a, b in FLIP_PAIRS:
            if a in partner and b in partner:
                partner[a], partner[b] = b, a
        return np.array([self.keypoints.index(partner[k]) for k in self.keypoints])


def _keypoints(owner: str, chosen: str | list[str], styles: dict[str, Style]) -> tuple[str, ...]:
    """ "all", a style's name, or a list of keypoint names -> keypoints in schema order."""
    if chosen == "all":
        return KEYPOINTS
    if isinstance(chosen, str):
        if chosen not in styles:
            raise ValueError(f"keypoints.toml: {owner!r} names unknown style {chosen!r}")
        return styles[chosen].keypoints
    unknown = set(chosen) - set(KEYPOINTS)
    if unknown:
        raise ValueError(f"keypoints.toml: {owner!r} names unknown keypoints {sorted(unknown)}")
    return tuple(k for k in KEYPOINTS if k in chosen)


STYLES: dict[str, Style] = {}
for _name, _chosen in _SPEC["styles"].items():
    STYLES[_name] = Style(_name, _keypoints(_name, _chosen, {}))
SPECIALISTS: dict[str, Specialist] = {
    name: Specialist(name, _keypoints(name, chosen, STYLES)) for name, chosen in _SPEC["specialists"].items()
}
# Today's rule for which trained specialist answers a coordinate: the one with the fewest keypoints.
SMALLEST_FIRST: tuple[str, ...] = tuple(sorted(SPECIALISTS, key=lambda name: len(SPECIALISTS[name].keypoints)))
_STYLES_SMALLEST_FIRST = sorted(STYLES.values(), key=lambda style: len(style.keypoints))


def style_of(labelled: np.ndarray) -> np.ndarray:
    """Each face's annotation style from its (N, 30) labelled-coordinate mask: the style with the
    fewest keypoints that holds all of the face's labels."""
    style = np.full(len(labelled), _STYLES_SMALLEST_FIRST[-1].name, dtype=object)
    for candidate in reversed(_STYLES_SMALLEST_FIRST[:-1]):
        outside = np.ones(len(COORDINATES), bool)
        outside[candidate.columns] = False
        style[~labelled[:, outside].any(axis=1)] = candidate.name
    return style.astype(str)


def specialist_for(
    coordinate: str,
    trained: Iterable[str] = tuple(SPECIALISTS),
    prefer: Sequence[str] = SMALLEST_FIRST,
) -> str:
    """The specialist whose prediction is used for a coordinate: the first in ``prefer`` among those
    ``trained`` that predict it."""
    trained = set(trained)
    for name in prefer:
        if name in trained and coordinate in SPECIALISTS[name].coordinates:
            return name
    raise ValueError(f"no trained specialist ({', '.join(sorted(trained))}) predicts {coordinate}")
