"""Cross-validation scores computed like the leaderboard, per annotation style.

Kaggle scores the RMSE over exactly the coordinates IdLookupTable asks for: all 30 of a full-style
test face, the 8 of a partial-style one. Out of fold, a face's asked coordinates are its labelled
ones, and each coordinate comes from the trained specialist the run's config prefers for it
(``leaderboard_mix``), or with ``inference.prefer_by_style`` the one that scores best out of fold on the
faces of the face's style (``style_choice``), then with ``inference.refine`` corrected by a second stage
fitted on the other folds' errors. ``score`` is the one scoring function every report uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from .refine import Refinement, fit_refinement
from .runs import VARIANT_LABELS, Run
from .schema import COORDINATES, KEYPOINTS, SMALLEST_FIRST, SPECIALISTS, STYLES, specialist_for

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
    return pd.Series({ALL_FACES: rmse(truth, prediction),
                      **{column: rmse(truth[style == name], prediction[style == name])
                         for name, column in STYLE_COLUMNS.items()}})


def score(truth: np.ndarray, prediction: np.ndarray, style: np.ndarray) -> pd.Series:
    """``style_scores``, and the RMSE over the WORST_FACES faces with the largest errors."""
    worst = np.argsort(-np.nan_to_num(face_errors(truth, prediction), nan=-1.0), kind="stable")[:WORST_FACES]
    return pd.concat([style_scores(truth, prediction, style),
                      pd.Series({WORST_COLUMN: rmse(truth[worst], prediction[worst])})])


def face_errors(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each face's RMSE over its labelled coordinates (NaN for a face with none)."""
    labelled = ~np.isnan(truth)
    squared = np.where(labelled, (predicted - np.where(labelled, truth, 0)) ** 2, 0).sum(axis=1)
    counts = labelled.sum(axis=1)
    return np.sqrt(np.divide(squared, counts, out=np.full(len(truth), np.nan), where=counts > 0))


def keypoint_scores(truth: np.ndarray, prediction: np.ndarray, style: np.ndarray) -> pd.DataFrame:
    """``style_scores`` of each keypoint's x and y (rows), then of all coordinates ("overall")."""
    rows = {k: style_scores(truth[:, 2 * i : 2 * i + 2], prediction[:, 2 * i : 2 * i + 2], style)
            for i, k in enumerate(KEYPOINTS)}
    rows["overall"] = style_scores(truth, prediction, style)
    return pd.DataFrame(rows).T


def cv_table(truth: np.ndarray, mixed: np.ndarray, style: np.ndarray,
             networks: dict[str, np.ndarray]) -> pd.DataFrame:
    """RMSE per keypoint: the leaderboard mix on all faces and per style, then each trained network
    alone on the faces labelled for its coordinates ((N, 30) predictions, NaN outside them)."""
    table = keypoint_scores(truth, mixed, style)
    for name, prediction in networks.items():
        own = np.where(np.isnan(prediction), np.nan, truth)
        table[f"{name} net"] = keypoint_scores(own, np.nan_to_num(prediction), style)[ALL_FACES]
    labelled = ~np.isnan(truth)
    table["labelled"] = [*(int(labelled[:, 2 * i].sum()) for i in range(len(KEYPOINTS))), len(truth)]
    return table


def leaderboard_mix(frames: dict[str, pd.DataFrame], prefer: Sequence[str] = SMALLEST_FIRST) -> pd.DataFrame:
    """All 30 coordinates, each from the first specialist in ``prefer`` that predicts it, on the keys every
    specialist has."""
    keys = next(iter(frames.values())).index
    for frame in frames.values():
        keys = keys.intersection(frame.index)
    return pd.DataFrame({c: frames[specialist_for(c, frames, prefer)].loc[keys, c] for c in COORDINATES}, index=keys)


def network_predictions(frames: dict[str, pd.DataFrame], keys: pd.Index) -> dict[str, np.ndarray]:
    """Each specialist's predictions on ``keys`` as (N, 30), NaN outside its coordinates."""
    out = {}
    for name, frame in frames.items():
        full = pd.DataFrame(np.nan, index=keys, columns=list(COORDINATES))
        columns = list(SPECIALISTS[name].coordinates)
        full[columns] = frame.loc[keys, columns].to_numpy()
        out[name] = full.to_numpy()
    return out


def style_choice(frames: dict[str, pd.DataFrame], truth: np.ndarray, style: np.ndarray,
                 prefer: Sequence[str]) -> dict[str, dict[str, str]]:
    """Style -> coordinate -> the trained specialist whose out-of-fold predictions of the coordinate score
    best on the faces of that style labelled with it (``frames`` on the rows of ``truth`` and ``style``).
    Ties, and coordinates no face of a style is labelled with, follow ``prefer``."""
    choice = {}
    for name in STYLES:
        choice[name] = {}
        for column, coordinate in enumerate(COORDINATES):
            candidates = [s for s in prefer if s in frames and coordinate in SPECIALISTS[s].coordinates]
            labelled = (style == name) & ~np.isnan(truth[:, column])
            if len(candidates) > 1 and labelled.any():
                errors = [np.mean((frames[s][coordinate].to_numpy()[labelled] - truth[labelled, column]) ** 2)
                          for s in candidates]
                candidates = [candidates[int(np.argmin(errors))]]
            choice[name][coordinate] = candidates[0]
    return choice


def mix_by_style(frames: dict[str, pd.DataFrame], style: pd.Series, choice: dict[str, dict[str, str]]) -> pd.DataFrame:
    """All 30 coordinates of the faces of ``style`` (key -> style name), each from the specialist ``choice``
    names for the face's style and the coordinate."""
    mixed = pd.DataFrame(np.nan, index=style.index, columns=list(COORDINATES))
    for name, keys in style.groupby(style).groups.items():
        for coordinate in COORDINATES:
            mixed.loc[keys, coordinate] = frames[choice[name][coordinate]].loc[keys, coordinate]
    return mixed


def chooses_by_style(inference, specialists) -> bool:
    """Whether coordinates are answered per annotation style: ``inference.prefer_by_style``, with more than
    one trained specialist to choose from."""
    return inference.prefer_by_style and len(specialists) > 1


def run_style_choice(run: Run, variant: str, training) -> dict[str, dict[str, str]] | None:
    """A run's ``style_choice`` measured on all its out-of-fold faces (what its test faces take), or None where
    it answers by ``inference.prefer`` alone (``prefer_by_style`` off, or one specialist trained)."""
    inference = run.spec.resolved.inference
    if not chooses_by_style(inference, run.spec.specialists):
        return None
    oof = run.oof(variant)
    rows = leaderboard_mix(oof, inference.prefer).index
    labelled = training.head(run.spec.limit)
    return style_choice({n: f.loc[rows] for n, f in oof.items()}, labelled.keypoints[rows.to_numpy()],
                        labelled.style[rows.to_numpy()], inference.prefer)


def mixed_oof(run: Run, variant: str, training) -> pd.DataFrame:
    """A run's out-of-fold predictions of all 30 coordinates (row x coordinates, and each row's fold),
    on the rows every trained specialist has predicted; ``training`` the run's labelled faces."""
    return mix_oof(run.oof(variant), run.spec.resolved.inference, training.head(run.spec.limit))


def mix_oof(frames: dict[str, pd.DataFrame], inference, training) -> pd.DataFrame:
    """``leaderboard_mix`` of out-of-fold frames, with each row's fold. With ``inference.prefer_by_style``,
    each fold's rows take the ``style_choice`` measured on the other folds' rows, and with ``inference.refine``
    the refinement fitted there (under that choice), so neither ever sees the faces it is scored on."""
    fixed = leaderboard_mix(frames, inference.prefer)
    fold = next(iter(frames.values())).loc[fixed.index, "fold"]
    by_style = chooses_by_style(inference, frames)
    if not by_style and inference.refine == "none":
        return fixed.assign(fold=fold)  # nothing is fitted on other folds: the fixed mix as it is
    rows = fixed.index.to_numpy()
    truth, style = training.keypoints[rows], pd.Series(training.style[rows], index=fixed.index)
    mixed = fixed.copy()
    for k in fold.unique():
        held_out = (fold == k).to_numpy()
        if held_out.all():
            continue  # one fold alone: nothing to fit on; the fixed order stands, nothing refined
        answered = fixed
        if by_style:
            choice = style_choice({n: f.loc[fixed.index[~held_out]] for n, f in frames.items()},
                                  truth[~held_out], style.to_numpy()[~held_out], inference.prefer)
            answered = mix_by_style(frames, style, choice)
        predicted = answered.to_numpy()
        if inference.refine != "none":
            predicted = fit_refinement(truth[~held_out], predicted[~held_out], inference.refine,
                                       inference.refine_alpha).apply(predicted)
        mixed.loc[held_out] = predicted[held_out]
    return mixed.assign(fold=fold)


def run_refinement(run: Run, variant: str, training) -> Refinement | None:
    """A run's refinement fitted on all its out-of-fold faces (what its test faces take), or None where
    ``inference.refine`` is "none"."""
    inference = run.spec.resolved.inference
    if inference.refine == "none":
        return None
    labelled = training.head(run.spec.limit)
    mixed = mix_oof(run.oof(variant), replace(inference, refine="none"), labelled)
    rows = mixed.index.to_numpy()
    return fit_refinement(labelled.keypoints[rows], mixed[list(COORDINATES)].to_numpy(), inference.refine,
                          inference.refine_alpha)


def run_scores(run: Run, training) -> tuple[dict[str, pd.DataFrame], dict[str, pd.Series], int]:
    """`fkp cv`'s report of a run, per variant (plain, flip): the ``cv_table``, the overall ``score``, and
    how many faces have out-of-fold predictions from every trained specialist."""
    tables, overall = {}, {}
    for variant in VARIANT_LABELS:
        frames = run.oof(variant)  # each prediction file read once
        mixed = mix_oof(frames, run.spec.resolved.inference, training)
        rows = mixed.index.to_numpy()
        truth, predicted, style = training.keypoints[rows], mixed[list(COORDINATES)].to_numpy(), training.style[rows]
        tables[variant] = cv_table(truth, predicted, style, network_predictions(frames, mixed.index))
        overall[variant] = score(truth, predicted, style)
    return tables, overall, len(rows)
