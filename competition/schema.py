"""The keypoint schema (names, flip pairs, specialist subsets), read once from keypoints.toml."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
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


@dataclass(frozen=True)
class Specialist:
    """A subset of keypoints that one CNN predicts."""

    name: str
    keypoints: tuple[str, ...]

    @property
    def coordinates(self) -> tuple[str, ...]:
        return tuple(f"{k}_{axis}" for k in self.keypoints for axis in "xy")

    @property
    def columns(self) -> np.ndarray:
        """Indices of this specialist's coordinates among the 30 COORDINATES."""
        return np.array([COORDINATES.index(c) for c in self.coordinates])

    @property
    def flip_permutation(self) -> np.ndarray:
        """For each output keypoint, the index of its mirror partner (itself if unpaired)."""
        partner = {k: k for k in self.keypoints}
        for a, b in FLIP_PAIRS:
            if a in partner and b in partner:
                partner[a], partner[b] = b, a
        return np.array([self.keypoints.index(partner[k]) for k in self.keypoints])


def _specialist(name: str, keypoints: str | list[str]) -> Specialist:
    chosen = KEYPOINTS if keypoints == "all" else tuple(keypoints)
    unknown = set(chosen) - set(KEYPOINTS)
    if unknown:
        raise ValueError(f"keypoints.toml: specialist {name!r} names unknown keypoints {sorted(unknown)}")
    return Specialist(name, tuple(k for k in KEYPOINTS if k in chosen))


SPECIALISTS: dict[str, Specialist] = {
    name: _specialist(name, kps) for name, kps in _SPEC["specialists"].items()
}
PARTIAL_COORDINATES: tuple[str, ...] = SPECIALISTS["partial"].coordinates


def specialist_for(coordinate: str, trained: Iterable[str] = tuple(SPECIALISTS)) -> str:
    """The specialist whose prediction is used for a coordinate: the one with the fewest keypoints
    among those ``trained`` that predict it (partial for its 8 when it was trained, else full)."""
    owners = [name for name in trained if coordinate in SPECIALISTS[name].coordinates]
    return min(owners, key=lambda name: len(SPECIALISTS[name].keypoints))
