"""Stacking runs: per-coordinate blend weights, fitted on out-of-fold predictions, and their honest score.

Members are arrays (M runs, N faces, C coordinates); truth is (N, C) with NaN where a face is not
labelled. Each coordinate gets its own weights, fitted on the faces labelled for it.
``out_of_fold_blend`` scores the blender the way the runs were scored: the weights that predict a face
never saw it, so a run of pure noise cannot buy a better score by overfitting the OOF rows. With
``by_style``, each annotation style gets weights of its own (``StyleWeights``), fitted on its faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls
from sklearn.linear_model import ElasticNet, Ridge

from .config import BlendConfig
from .schema import STYLES


@dataclass(frozen=True)
class Weights:
    coef: np.ndarray  # (C, M): each coordinate's weight on each member
    intercept: np.ndarray  # (C,)

    @classmethod
    def average(cls, members: int, coordinates: int) -> Weights:
        """Equal weights: what one run (or a coordinate nobody labelled) gets."""
        return cls(np.full((coordinates, members), 1 / members), np.zeros(coordinates))

    def apply(self, members: np.ndarray, style: np.ndarray | None = None) -> np.ndarray:
        """(M, N, C) member predictions -> (N, C) blended predictions (the same weights for every style)."""
        return np.einsum("mnc,cm->nc", members, self.coef) + self.intercept


@dataclass(frozen=True)
class StyleWeights:
    """Weights per annotation style: a face takes its own style's."""

    by_style: dict[str, Weights]

    def apply(self, members: np.ndarray, style: np.ndarray) -> np.ndarray:
        blended = np.full(members.shape[1:], np.nan)
        for name, weights in self.by_style.items():
            blended[style == name] = weights.apply(members[:, style == name])
        return blended


def _fit_coordinate(predictions: np.ndarray, target: np.ndarray, config: BlendConfig) -> tuple[np.ndarray, float]:
    """Weights and intercept for one coordinate: ``target (n,) ~ predictions (n, M) @ w + b``."""
    if config.method == "nnls":
        coef, _ = nnls(predictions, target)
        return coef, 0.0
    if config.method == "ridge":
        model = Ridge(alpha=config.alpha, positive=config.positive)
    else:
        model = ElasticNet(alpha=config.alpha, l1_ratio=config.l1_ratio, positive=config.positive, max_iter=100_000)
    model.fit(predictions, target)
    return model.coef_, float(model.intercept_)


def fit_weights(members: np.ndarray, truth: np.ndarray, config: BlendConfig) -> Weights:
    """Weights fitted, coordinate by coordinate, on the faces labelled for that coordinate."""
    n_members, _, n_coordinates = members.shape
    weights = Weights.average(n_members, n_coordinates)
    for c in range(n_coordinates):
        labelled = ~np.isnan(truth[:, c])
        if labelled.any():
            weights.coef[c], weights.intercept[c] = _fit_coordinate(
                members[:, labelled, c].T, truth[labelled, c], config
            )
    return weights


def fit_blend(members: np.ndarray, truth: np.ndarray, config: BlendConfig,
              style: np.ndarray | None = None) -> Weights | StyleWeights:
    """``fit_weights`` on all faces, or with ``config.by_style`` on each annotation style's faces apart."""
    if not config.by_style:
        return fit_weights(members, truth, config)
    return StyleWeights({name: fit_weights(members[:, style == name], truth[style == name], config)
                         for name in STYLES})


def out_of_fold_blend(members: np.ndarray, truth: np.ndarray, fold: np.ndarray, config: BlendConfig,
                      style: np.ndarray | None = None) -> np.ndarray:
    """(N, C) blended predictions where each face's weights were fitted on the other folds' faces.

    ``fold`` must hold at least two folds (the caller refuses fewer, with a reason for the user)."""
    blended = np.empty(truth.shape)
    for held_out in np.unique(fold):
        held = fold == held_out
        weights = fit_blend(members[:, ~held], truth[~held], config, None if style is None else style[~held])
        blended[held] = weights.apply(members[:, held], None if style is None else style[held])
    return blended
