"""A run's out-of-fold answers, and their scores computed like the leaderboard, per annotation style.

Kaggle scores the RMSE over exactly the coordinates IdLookupTable asks for: all 30 of a full-style
test face, the 8 of a partial-style one. Out of fold, a face's asked coordinates are its labelled
ones, and its answer is the run's inference head (``head.RunHead``: the specialist choice, then the
second stage) fitted on the other folds' faces (``oof_answers``). ``fit_run_head`` fits the head the
test faces take, on every out-of-fold face, and stores it in the run. ``score`` is the one scoring
function every report uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .head import RunHead, cross_fit_predict
from .run import VARIANTS, Run
from .schema import COORDINATES, KEYPOINTS, STYLES

ALL_FACES = "all faces"
STYLE_COLUMNS = {name: f"{name}-style" for name in STYLES}
WORST_FACES = 20  # a few faces decide an RMSE: their own figure shows progress on them
WORST_COLUMN = f"worst {WORST_FACES}"


def rmse(truth: np.ndarray, prediction: np.ndarray) -> float:
    """RMSE over the labelled (non-NaN) entries of ``truth``, pooled."""
    labelled = ~np.isnan(truth)
    if not labelled.any():
        return float("nan")
    return float(np.sqrt(np.mean((prediction[labelled] - truth[labelled]) ** 2)))


def style_scores(truth: np.ndarray, prediction: np.ndarray, style: np.ndarray) -> pd.Series:
    """The leaderboard's RMSE over all faces, and over the faces of each annotation style alone (each face
    over its labelled coordinates)."""
    return pd.Series(
        {
            ALL_FACES: rmse(truth, prediction),
            **{column: rmse(truth[style == name], prediction[style == name]) for name, column in STYLE_COLUMNS.items()},
        }
    )


def score(truth: np.ndarray, prediction: np.ndarray, style: np.ndarray) -> pd.Series:
    """``style_scores``, and the RMSE over the WORST_FACES faces with the largest errors."""
    worst = np.argsort(-np.nan_to_num(face_errors(truth, prediction), nan=-1.0), kind="stable")[:WORST_FACES]
    return pd.concat(
        [style_scores(truth, prediction, style), pd.Series({WORST_COLUMN: rmse(truth[worst], prediction[worst])})]
    )


def face_errors(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each face's RMSE over its labelled coordinates (NaN for a face with none)."""
    labelled = ~np.isnan(truth)
    squared = np.where(labelled, (predicted - np.where(labelled, truth, 0)) ** 2, 0).sum(axis=1)
    counts = labelled.sum(axis=1)
    return np.sqrt(np.divide(squared, counts, out=np.full(len(truth), np.nan), where=counts > 0))


def keypoint_scores(truth: np.ndarray, prediction: np.ndarray, style: np.ndarray) -> pd.DataFrame:
    """``style_scores`` of each keypoint's x and y (rows), then of all coordinates ("overall")."""
    rows = {
        k: style_scores(truth[:, 2 * i : 2 * i + 2], prediction[:, 2 * i : 2 * i + 2], style)
        for i, k in enumerate(KEYPOINTS)
    }
    rows["overall"] = style_scores(truth, prediction, style)
    return pd.DataFrame(rows).T


def cv_table(
    truth: np.ndarray, answers: np.ndarray, style: np.ndarray, specialists: list[str], predictions: np.ndarray
) -> pd.DataFrame:
    """RMSE per keypoint: the answers on all faces and per style, then each trained network alone on the faces
    labelled for its coordinates (``predictions``: (S, N, 30), NaN outside them)."""
    table = keypoint_scores(truth, answers, style)
    for name, prediction in zip(specialists, predictions):
        own = np.where(np.isnan(prediction), np.nan, truth)
        table[f"{name} net"] = keypoint_scores(own, np.nan_to_num(prediction), style)[ALL_FACES]
    labelled = ~np.isnan(truth)
    table["labelled"] = [*(int(labelled[:, 2 * i].sum()) for i in range(len(KEYPOINTS))), len(truth)]
    return table


def unfitted_head(run: Run) -> RunHead:
    return RunHead.from_config(run.spec.resolved.inference, run.spec.specialists)


@dataclass(frozen=True)
class OutOfFold:
    """A run's out-of-fold input to its head, on the rows every trained specialist predicted: the specialists'
    predictions (S, N, 30), each row's fold, and its labels and style."""

    rows: np.ndarray
    predictions: np.ndarray
    fold: np.ndarray
    truth: np.ndarray
    style: np.ndarray

    def cross_fitted(self, head: RunHead) -> np.ndarray:
        """(N, 30) answers, each fold's rows by ``head`` fitted on the other folds' rows."""
        return cross_fit_predict(head, self.predictions, self.truth, self.style, self.fold)


def out_of_fold(run: Run, variant: str, training) -> OutOfFold:
    """``OutOfFold`` of a run's ``variant`` (plain, tta); ``training``: the data it was trained on."""
    labelled = training.head(run.spec.limit)
    rows, predictions, fold = run.oof_stack(variant)
    return OutOfFold(rows, predictions, fold, labelled.keypoints[rows], labelled.style[rows])


def out_of_fold_by_variant(run: Run, training) -> dict[str, OutOfFold]:
    """``out_of_fold`` of each variant, as `fkp cv` fits the head and scores the run on them."""
    return {variant: out_of_fold(run, variant, training) for variant in VARIANTS}


def oof_answers(run: Run, variant: str, training) -> pd.DataFrame:
    """A run's cross-fitted out-of-fold answers of all 30 coordinates (row x coordinates, and each row's fold)."""
    oof = out_of_fold(run, variant, training)
    answers = oof.cross_fitted(unfitted_head(run))
    return pd.DataFrame(answers, index=pd.Index(oof.rows, name="row"), columns=list(COORDINATES)).assign(fold=oof.fold)


def fit_run_head(run: Run, oof: dict[str, OutOfFold]) -> None:
    """The head of each variant fitted on all the run's out-of-fold faces (what its test faces take), written
    into the run."""
    run.write_head(
        {variant: unfitted_head(run).fit(o.predictions, o.truth, o.style, o.fold) for variant, o in oof.items()}
    )


def run_scores(run: Run, oof: dict[str, OutOfFold]) -> tuple[dict[str, pd.DataFrame], dict[str, pd.Series], int]:
    """`fkp cv`'s report of a run, per variant (plain, tta): the ``cv_table``, the overall ``score``, and
    how many faces have out-of-fold predictions from every trained specialist."""
    tables, overall = {}, {}
    for variant, o in oof.items():
        answers = o.cross_fitted(unfitted_head(run))
        tables[variant] = cv_table(o.truth, answers, o.style, run.spec.specialists, o.predictions)
        overall[variant] = score(o.truth, answers, o.style)
    return tables, overall, len(next(iter(oof.values())).rows)
