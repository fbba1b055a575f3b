"""The second stage: a linear correction of a run's keypoints, fitted on its own out-of-fold errors.

A network's errors are not all noise. Some are shared by every face (the centre line a fraction of a pixel
off; labels that are not quite mirror-symmetric, where flips make the network so), and some follow the
face's predicted shape and framing, which the 30 predicted coordinates describe. Fitted
on the faces each coordinate is labelled on, ``offsets`` cancels the first kind: each coordinate's mean
error; ``linear`` both: each coordinate's error regressed (scikit-learn's Ridge) on all 30 predicted
coordinates. Out of fold, each fold's faces are corrected by a fit on the other folds' faces
(``evaluate.mix_oof``); test faces by a fit on every out-of-fold face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFINEMENTS = ("none", "offsets", "linear")


@dataclass(frozen=True)
class Refinement:
    """keypoints (N, C) -> keypoints + (keypoints - centre) @ weights + intercept."""

    centre: np.ndarray  # (C,): the mean predicted keypoints of the faces it was fitted on
    weights: np.ndarray  # (C, C): column c maps the centred keypoints to coordinate c's correction
    intercept: np.ndarray  # (C,)

    def apply(self, keypoints: np.ndarray) -> np.ndarray:
        return keypoints + (keypoints - self.centre) @ self.weights + self.intercept

    def as_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The same map as one matrix and bias, keypoints @ kernel + bias (a Dense layer's weights)."""
        return np.eye(len(self.centre)) + self.weights, self.intercept - self.centre @ self.weights


def fit_refinement(truth: np.ndarray, predicted: np.ndarray, kind: str, alpha: float) -> Refinement:
    """``kind`` ("offsets" or "linear") fitted coordinate by coordinate on the faces labelled with it (truth
    NaN elsewhere; a coordinate no face is labelled with is left alone). ``alpha``: "linear"'s ridge penalty
    per labelled face, so it means the same for a coordinate 1,000 faces have as for one 3,000 have."""
    from sklearn.linear_model import Ridge  # here, not at the top: config imports this module, and every fkp
    # command would pay scikit-learn's import (over a second) at its start

    coordinates = predicted.shape[1]
    centre = predicted.mean(axis=0)
    weights, intercept = np.zeros((coordinates, coordinates)), np.zeros(coordinates)
    for c in range(coordinates):
        labelled = ~np.isnan(truth[:, c])
        if not labelled.any():
            continue
        error = truth[labelled, c] - predicted[labelled, c]
        if kind == "offsets":
            intercept[c] = error.mean()
            continue
        model = Ridge(alpha=alpha * labelled.sum()).fit(predicted[labelled] - centre, error)
        weights[:, c], intercept[c] = model.coef_, model.intercept_
    return Refinement(centre, weights, intercept)
