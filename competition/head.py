"""The inference head: how a run, or a blend of runs, turns its networks' predictions into the answer.

Each step is an estimator in scikit-learn's manner, fitted on out-of-fold predictions and nothing else:
``fit(predictions, truth, style)`` learns, ``predict(predictions, style)`` answers, fitted attributes end
in ``_``, and ``clone()`` is the same step unfitted. ``predictions`` stacks what the step combines,
(K, N, 30): K specialists' predictions (NaN outside each one's coordinates), or K runs' answers; ``truth``
is (N, 30) with NaN where a face is not labelled; ``style`` is each face's annotation style.

- ``SpecialistChoice``: which trained specialist answers each coordinate, in a fixed order of preference or,
  per annotation style, the one that scores best on that style's faces.
- ``SecondStage``: a linear correction of the 30 coordinates, fitted on their errors.
- ``BlendWeights``: per-coordinate weights of several runs' answers (optionally per style).
- ``RunHead``: a run's choice, then its second stage; stored in the run as JSON (``to_dict``).

``cross_fit_predict`` gives every out-of-fold figure: each fold's faces are answered by a clone fitted on
the other folds' faces. A step fitted on no face changes nothing, so a run with one finished fold is
answered by its fixed order alone. Every step can become Keras layers (``to_keras``) for `fkp export`.
A new inference stage is one more class with these methods. Keras-free until ``to_keras`` is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .schema import COORDINATES, SMALLEST_FIRST, SPECIALISTS, STYLES

ALL = "all"  # the key of what every face takes, where a step is not fitted per annotation style


class Step(Protocol):
    def fit(self, predictions: np.ndarray, truth: np.ndarray, style: np.ndarray) -> Step: ...

    def predict(self, predictions: np.ndarray, style: np.ndarray) -> np.ndarray: ...

    def clone(self) -> Step: ...


def cross_fit_predict(
    step: Step, predictions: np.ndarray, truth: np.ndarray, style: np.ndarray, fold: np.ndarray
) -> np.ndarray:
    """(N, 30) answers of ``step`` where each fold's faces (``fold``: each face's fold) are answered by a clone
    fitted on the other folds' faces only, so no answer comes from a fit that saw its face."""
    answers = np.full((predictions.shape[1], len(COORDINATES)), np.nan)
    for held_out in np.unique(fold):
        held = fold == held_out
        fitted = step.clone().fit(predictions[:, ~held], truth[~held], style[~held])
        answers[held] = fitted.predict(predictions[:, held], style[held])
    return answers


class SpecialistChoice:
    """Each coordinate from one trained specialist: the first of ``prefer`` that predicts it or, ``by_style``,
    per annotation style the one whose predictions of it score best on that style's labelled faces (ties, and
    coordinates no face of a style is labelled with, follow ``prefer``)."""

    def __init__(self, specialists: Sequence[str], prefer: Sequence[str] = SMALLEST_FIRST, by_style: bool = False):
        self.specialists, self.prefer, self.by_style = list(specialists), list(prefer), by_style

    def clone(self) -> SpecialistChoice:
        return SpecialistChoice(self.specialists, self.prefer, self.by_style)

    def _candidates(self, coordinate: str) -> list[int]:
        return [
            self.specialists.index(name)
            for name in self.prefer
            if name in self.specialists and coordinate in SPECIALISTS[name].coordinates
        ]

    def fit(self, predictions: np.ndarray, truth: np.ndarray, style: np.ndarray) -> SpecialistChoice:
        if not self.by_style:  # the fixed order: nothing to learn
            self.choice_ = {ALL: [self._candidates(coordinate)[0] for coordinate in COORDINATES]}
            return self
        self.choice_ = {}
        for name in STYLES:
            self.choice_[name] = []
            for column, coordinate in enumerate(COORDINATES):
                candidates = self._candidates(coordinate)
                labelled = (style == name) & ~np.isnan(truth[:, column])
                if len(candidates) > 1 and labelled.any():
                    errors = [
                        np.mean((predictions[s, labelled, column] - truth[labelled, column]) ** 2) for s in candidates
                    ]
                    candidates = [candidates[int(np.argmin(errors))]]
                self.choice_[name].append(candidates[0])
        return self

    def predict(self, predictions: np.ndarray, style: np.ndarray) -> np.ndarray:
        answers = np.full(predictions.shape[1:], np.nan)
        for name, sources in self.choice_.items():
            faces = slice(None) if name == ALL else style == name
            answers[faces] = predictions[sources, :, np.arange(len(COORDINATES))].T[faces]
        return answers

    def sources(self, style: str) -> list[str]:
        """The specialist answering each coordinate of a face of ``style``."""
        return [self.specialists[s] for s in self.choice_.get(ALL, self.choice_.get(style))]

    def to_dict(self) -> dict:
        return {
            "specialists": self.specialists,
            "prefer": self.prefer,
            "by_style": self.by_style,
            "choice": {name: self.sources(name) for name in self.choice_},
        }

    @classmethod
    def from_dict(cls, record: dict) -> SpecialistChoice:
        choice = cls(record["specialists"], record["prefer"], record["by_style"])
        choice.choice_ = {
            name: [choice.specialists.index(s) for s in sources] for name, sources in record["choice"].items()
        }
        return choice

    def to_keras(self, answers: dict, style: str = "full", name: str = "chosen"):
        """The chosen columns of each specialist's Keras output (``answers``: name -> (N, its coordinates)),
        for a face of ``style`` (a photo's face is asked for all 30, as a full-style face is)."""
        import keras

        from .models.layers import TakeColumns

        names = self.specialists
        offsets = np.cumsum([0, *(len(SPECIALISTS[n].coordinates) for n in names)])
        columns = [
            int(offsets[names.index(source)]) + SPECIALISTS[source].coordinates.index(coordinate)
            for source, coordinate in zip(self.sources(style), COORDINATES)
        ]
        joined = (
            answers[names[0]]
            if len(names) == 1
            else keras.layers.Concatenate(name="specialists")([answers[n] for n in names])
        )
        return TakeColumns(columns, name=name)(joined)


class SecondStage:
    """A linear correction of the 30 coordinates, fitted coordinate by coordinate on the faces labelled with it:
    ``"offsets"`` adds each coordinate's mean error (errors every face shares: the centre line a fraction of a
    pixel off, labels not quite mirror-symmetric); ``"linear"`` regresses each coordinate's error on all 30
    centred predictions (scikit-learn's Ridge, ``alpha`` per labelled face, so it means the same for a
    coordinate 1,000 faces have as for one 3,000 have), which also corrects errors that follow the face's
    shape and framing. Its input is (1, N, 30): one answer to correct."""

    KINDS = ("offsets", "linear")

    def __init__(self, kind: str = "linear", alpha: float = 20.0):
        self.kind, self.alpha = kind, alpha

    def clone(self) -> SecondStage:
        return SecondStage(self.kind, self.alpha)

    def fit(self, predictions: np.ndarray, truth: np.ndarray, style: np.ndarray | None = None) -> SecondStage:
        from sklearn.linear_model import Ridge  # not at the top: scikit-learn's import costs every command a second

        predicted = predictions[0]
        coordinates = predicted.shape[1]
        self.centre_ = predicted.mean(axis=0) if len(predicted) else np.zeros(coordinates)
        self.weights_, self.intercept_ = np.zeros((coordinates, coordinates)), np.zeros(coordinates)
        for c in range(coordinates):
            labelled = ~np.isnan(truth[:, c])
            if not labelled.any():
                continue
            error = truth[labelled, c] - predicted[labelled, c]
            if self.kind == "offsets":
                self.intercept_[c] = error.mean()
                continue
            model = Ridge(alpha=self.alpha * labelled.sum()).fit(predicted[labelled] - self.centre_, error)
            self.weights_[:, c], self.intercept_[c] = model.coef_, model.intercept_
        return self

    def predict(self, predictions: np.ndarray, style: np.ndarray | None = None) -> np.ndarray:
        predicted = predictions[0]
        return predicted + (predicted - self.centre_) @ self.weights_ + self.intercept_

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The same map as one matrix and bias, keypoints @ kernel + bias (a Dense layer's weights)."""
        return np.eye(len(self.centre_)) + self.weights_, self.intercept_ - self.centre_ @ self.weights_

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "alpha": self.alpha,
            "centre": self.centre_.tolist(),
            "weights": self.weights_.tolist(),
            "intercept": self.intercept_.tolist(),
        }

    @classmethod
    def from_dict(cls, record: dict) -> SecondStage:
        stage = cls(record["kind"], record["alpha"])
        stage.centre_, stage.weights_, stage.intercept_ = (
            np.array(record[key], dtype=np.float64) for key in ("centre", "weights", "intercept")
        )
        return stage

    def to_keras(self, keypoints, name: str = "second_stage"):
        import keras

        dense = keras.layers.Dense(len(self.centre_), name=name)
        out = dense(keypoints)
        dense.set_weights([w.astype(np.float32) for w in self.affine()])
        return out


class RunHead:
    """How a run answers a face: its ``SpecialistChoice``, then its ``SecondStage`` if it has one."""

    def __init__(self, choice: SpecialistChoice, second_stage: SecondStage | None = None):
        self.choice, self.second_stage = choice, second_stage

    @classmethod
    def from_config(cls, inference, specialists: Sequence[str]) -> RunHead:
        """The unfitted head a run's ``[inference]`` settings describe, over its trained ``specialists``."""
        choice = SpecialistChoice(specialists, inference.prefer, inference.prefer_by_style)
        stage = None if inference.refine == "none" else SecondStage(inference.refine, inference.refine_alpha)
        return cls(choice, stage)

    def clone(self) -> RunHead:
        return RunHead(self.choice.clone(), self.second_stage and self.second_stage.clone())

    def fit(
        self, predictions: np.ndarray, truth: np.ndarray, style: np.ndarray, fold: np.ndarray | None = None
    ) -> RunHead:
        """Fit the choice, then the second stage on the choice's answers. With ``fold``, the second stage learns
        from the choice's cross-fitted answers: as honest as those it will correct on faces never seen."""
        self.choice.fit(predictions, truth, style)
        if self.second_stage is not None:
            chosen = (
                self.choice.predict(predictions, style)
                if fold is None
                else cross_fit_predict(self.choice, predictions, truth, style, fold)
            )
            self.second_stage.fit(chosen[None], truth, style)
        return self

    def predict(self, predictions: np.ndarray, style: np.ndarray) -> np.ndarray:
        answers = self.choice.predict(predictions, style)
        return answers if self.second_stage is None else self.second_stage.predict(answers[None], style)

    def to_dict(self) -> dict:
        return {
            "choice": self.choice.to_dict(),
            "second_stage": None if self.second_stage is None else self.second_stage.to_dict(),
        }

    @classmethod
    def from_dict(cls, record: dict) -> RunHead:
        stage = record["second_stage"]
        return cls(
            SpecialistChoice.from_dict(record["choice"]), None if stage is None else SecondStage.from_dict(stage)
        )

    def to_keras(self, answers: dict, style: str = "full"):
        """The head as Keras layers on the specialists' outputs (name -> tensor): (N, 30) keypoints."""
        if self.second_stage is None:
            return self.choice.to_keras(answers, style, name="keypoints")
        return self.second_stage.to_keras(self.choice.to_keras(answers, style), name="keypoints")


class BlendWeights:
    """Per-coordinate weights of K runs' answers, each coordinate's fitted on the faces labelled with it:
    ``"nnls"`` (scipy's non-negative least squares, no intercept), ``"ridge"`` or ``"elasticnet"``
    (scikit-learn's); ``by_style``, one set of weights per annotation style, fitted on its faces. A coordinate
    no face is labelled with keeps equal weights."""

    def __init__(
        self,
        method: str = "nnls",
        alpha: float = 1.0,
        l1_ratio: float = 0.5,
        positive: bool = True,
        by_style: bool = False,
    ):
        self.method, self.alpha, self.l1_ratio, self.positive, self.by_style = (
            method,
            alpha,
            l1_ratio,
            positive,
            by_style,
        )

    @classmethod
    def from_config(cls, config) -> BlendWeights:
        return cls(config.method, config.alpha, config.l1_ratio, config.positive, config.by_style)

    @classmethod
    def average(cls, members: int) -> BlendWeights:
        """Equal weights, fitted on nothing: what one run's fold average is."""
        weights = cls()
        weights.coef_ = {ALL: np.full((len(COORDINATES), members), 1 / members)}
        weights.intercept_ = {ALL: np.zeros(len(COORDINATES))}
        return weights

    def clone(self) -> BlendWeights:
        return BlendWeights(self.method, self.alpha, self.l1_ratio, self.positive, self.by_style)

    def _fit_coordinate(self, predictions: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        """``target (n,) ~ predictions (n, K) @ w + b`` for one coordinate."""
        if self.method == "nnls":
            from scipy.optimize import nnls

            coef, _ = nnls(predictions, target)
            return coef, 0.0
        from sklearn.linear_model import ElasticNet, Ridge

        if self.method == "ridge":
            model = Ridge(alpha=self.alpha, positive=self.positive)
        else:
            model = ElasticNet(alpha=self.alpha, l1_ratio=self.l1_ratio, positive=self.positive, max_iter=100_000)
        model.fit(predictions, target)
        return model.coef_, float(model.intercept_)

    def _fit_weights(self, members: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coef = np.full((truth.shape[1], len(members)), 1 / len(members))
        intercept = np.zeros(truth.shape[1])
        for c in range(truth.shape[1]):
            labelled = ~np.isnan(truth[:, c])
            if labelled.any():
                coef[c], intercept[c] = self._fit_coordinate(members[:, labelled, c].T, truth[labelled, c])
        return coef, intercept

    def fit(self, predictions: np.ndarray, truth: np.ndarray, style: np.ndarray) -> BlendWeights:
        groups = {name: style == name for name in STYLES} if self.by_style else {ALL: np.ones(len(truth), bool)}
        self.coef_, self.intercept_ = {}, {}
        for name, faces in groups.items():
            self.coef_[name], self.intercept_[name] = self._fit_weights(predictions[:, faces], truth[faces])
        return self

    def predict(self, predictions: np.ndarray, style: np.ndarray) -> np.ndarray:
        if ALL in self.coef_:
            return np.einsum("mnc,cm->nc", predictions, self.coef_[ALL]) + self.intercept_[ALL]
        answers = np.full(predictions.shape[1:], np.nan)
        for name in self.coef_:
            faces = style == name
            answers[faces] = np.einsum("mnc,cm->nc", predictions[:, faces], self.coef_[name]) + self.intercept_[name]
        return answers

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "alpha": self.alpha,
            "l1_ratio": self.l1_ratio,
            "positive": self.positive,
            "by_style": self.by_style,
            "coef": {k: v.tolist() for k, v in self.coef_.items()},
            "intercept": {k: v.tolist() for k, v in self.intercept_.items()},
        }

    @classmethod
    def from_dict(cls, record: dict) -> BlendWeights:
        weights = cls(record["method"], record["alpha"], record["l1_ratio"], record["positive"], record["by_style"])
        weights.coef_ = {k: np.array(v, dtype=np.float64) for k, v in record["coef"].items()}
        weights.intercept_ = {k: np.array(v, dtype=np.float64) for k, v in record["intercept"].items()}
        return weights

    def to_keras(self, answers: list, style: str = "full"):
        """The weighted sum of K runs' Keras outputs ((N, 30) each), with ``style``'s weights when ``by_style``."""
        from .models.layers import WeightedSum

        key = ALL if ALL in self.coef_ else style
        return WeightedSum(self.coef_[key].tolist(), self.intercept_[key].tolist(), name="blend")(answers)
