"""`fkp blend`: one or more runs -> OOF-fitted per-coordinate blend -> a Kaggle submission.

A run predicts each coordinate with the specialist that owns it (the leaderboard mix); its test
predictions are the mean over its folds. One run is that fold average. Several runs get weights
per coordinate fitted on their out-of-fold predictions (``stacking``), scored out of fold, then
refitted on every OOF face and applied to the test predictions. Runs must share their folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import BlendConfig
from .data import TestSet, TrainingSet
from .errors import InputError
from .evaluate import (chooses_by_style, leaderboard_mix, mix_by_style, mixed_oof, rmse, run_refinement,
                       run_style_choice, score)
from .io import write_csv, write_text
from .plots import FacePanel, face_grid, save_png
from .runs import VARIANT_LABELS, Run
from .schema import COORDINATES, IMAGE_SIZE
from .stacking import StyleWeights, Weights, fit_blend, out_of_fold_blend

FOLD_KEYS = ("fingerprint", "folds", "fold_seed", "limit")  # what makes two runs' folds the same
SCORE_COLUMNS = (*VARIANT_LABELS.values(), "used")


def checked_run(run_dir: Path, training: TrainingSet) -> Run:
    """A run, refused when it was trained on other data than ``training``."""
    run = Run(run_dir)
    if run.spec.fingerprint != training.fingerprint:
        raise InputError(
            run.spec_path,
            f"trained on other data (fingerprint {run.spec.fingerprint}) than --data holds ({training.fingerprint})",
        )
    return run


def tta_used(run: Run, tta: bool | None) -> bool:
    """Whether a run's TTA predictions are used: ``tta`` if given, else its config's inference.tta."""
    return run.spec.resolved.inference.tta if tta is None else tta


def variant(tta: bool) -> str:
    return "flip" if tta else "plain"


def fold_average(run: Run, name: str, tta: bool, allow_partial: bool) -> pd.DataFrame:
    """One specialist's test predictions averaged over its finished folds, indexed by ImageId."""
    predictions = run.test(variant(tta), [name])[name]
    folds = run.spec.folds
    missing = sorted(set(range(folds)) - set(predictions["fold"]))
    if missing and not allow_partial:
        raise InputError(
            run.path / name,
            f"folds {missing} of {folds} are missing: finish them with `fkp cv --fold K` "
            "or pass --allow-partial",
        )
    if len(missing) == folds:
        raise InputError(run.path / name, "no finished fold to blend")
    finished = predictions["fold"].unique()
    per_face = predictions.groupby(level=0)["fold"].nunique()
    if (per_face < len(finished)).any():
        image_id = per_face.index[per_face < len(finished)][0]
        fold = sorted(set(finished) - set(predictions.loc[[image_id], "fold"]))[0]
        raise InputError(run.predictions_path("test", variant(tta), name, fold),
                         f"no prediction for test ImageId {image_id}, which other folds predict: delete the fold "
                         "and rerun `fkp cv`")
    with np.errstate(over="ignore"):  # a mean that overflows is refused by check_submission, in one line
        return predictions.drop(columns="fold").groupby(level=0).mean()


def leaderboard_test(run: Run, tta: bool, allow_partial: bool, training: TrainingSet | None = None,
                     test_styles: pd.Series | None = None) -> pd.DataFrame:
    """A run's test predictions (ImageId x 30 coordinates), each specialist averaged over its folds. With
    ``inference.prefer_by_style``, each test face's coordinates come from the specialists that score best out
    of fold on faces of its style, and with ``inference.refine`` they are refined by the fit on every
    out-of-fold face (``training``: the run's labelled faces; ``test_styles``: ImageId -> style)."""
    frames = {name: fold_average(run, name, tta, allow_partial) for name in run.spec.specialists}
    inference = run.spec.resolved.inference
    mixed = leaderboard_mix(frames, inference.prefer)
    by_style = chooses_by_style(inference, frames)
    if (by_style or inference.refine != "none") and (training is None or (by_style and test_styles is None)):
        raise ValueError("a run with inference.prefer_by_style needs its training faces and the test faces' styles; "
                         "one with inference.refine its training faces")
    if by_style:
        mixed = mix_by_style(frames, test_styles.reindex(mixed.index), run_style_choice(run, variant(tta), training))
    refinement = run_refinement(run, variant(tta), training)
    if refinement is not None:
        mixed[:] = refinement.apply(mixed.to_numpy())
    return mixed


def submission(lookup: pd.DataFrame, keypoints: pd.DataFrame, source: str) -> pd.DataFrame:
    """``RowId,Location`` for every lookup row, in its order, from ``keypoints`` (ImageId x coordinates)
    predicted by ``source``; unclipped."""
    rows = keypoints.index.get_indexer(lookup["ImageId"])
    if (rows < 0).any():
        first = int(np.flatnonzero(rows < 0)[0])
        raise InputError(source, f"no prediction for test ImageId {lookup['ImageId'].iloc[first]}, which "
                                 f"IdLookupTable asks for (RowId {lookup['RowId'].iloc[first]}): rerun `fkp cv`")
    columns = keypoints.columns.get_indexer(lookup["FeatureName"])
    return pd.DataFrame({"RowId": lookup["RowId"].to_numpy(), "Location": keypoints.to_numpy()[rows, columns]})


def check_submission(result: pd.DataFrame, lookup: pd.DataFrame, out: Path) -> None:
    """The last look before a submission replaces the one at ``out``: every IdLookupTable RowId exactly
    once and in its order, every Location a finite number."""
    if list(result.columns) != ["RowId", "Location"] or not np.array_equal(result["RowId"], lookup["RowId"]):
        raise InputError(out, "its RowIds would not be IdLookupTable's, each once and in order: not written")
    finite = np.isfinite(result["Location"].to_numpy(np.float64))
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InputError(out, f"Location of RowId {result['RowId'].iloc[row]} would be {result['Location'].iloc[row]}, "
                              f"not a finite number ({(~finite).sum()} such rows): not written; check the runs' "
                              "test predictions and blend weights")


def clip_to_image(result: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Locations outside the image moved to its edge, and how many were."""
    location = result["Location"]
    outside = int(((location < 0) | (location > IMAGE_SIZE)).sum())
    return result.assign(Location=location.clip(0, IMAGE_SIZE)), outside


def check_same_folds(runs: list[Run]) -> None:
    """Refuse runs whose out-of-fold rows were not made on the same folds of the same faces."""
    first, *others = runs
    for run in others:
        differs = [f"{key} {getattr(run.spec, key)} vs {getattr(first.spec, key)}"
                   for key in FOLD_KEYS if getattr(run.spec, key) != getattr(first.spec, key)]
        if differs:
            raise InputError(
                run.spec_path,
                f"made on other folds than run {first.name!r} ({'; '.join(differs)}): only runs on the same folds blend",
            )


@dataclass(frozen=True)
class Blend:
    runs: list[str]
    tta: dict[str, bool]  # run -> TTA used
    method: str  # "fold average" for one run, else the blend config's method
    scores: pd.DataFrame  # each run's OOF RMSE on all faces: a row per run; columns SCORE_COLUMNS
    blend_scores: pd.Series  # the blend's OOF RMSE (weights fitted on other folds), by SCORE_COLUMNS
    style_scores: pd.DataFrame  # OOF RMSE as used, on all faces and per annotation style: a row per run, then "blend"
    faces: int  # out-of-fold faces scored (those every run predicted)
    weights: pd.DataFrame  # coordinate x (runs..., intercept)
    keypoints: pd.DataFrame  # blended test predictions, ImageId x 30 coordinates


def blend_runs(
    run_dirs: list[Path], training: TrainingSet, config: BlendConfig, *, tta: bool | None = None,
    allow_partial: bool = False, test_styles: pd.Series | None = None,
) -> Blend:
    """Score and blend runs; ``test_styles`` (ImageId -> style, from IdLookupTable) is needed by ``by_style``."""
    names = [run_dir.name for run_dir in run_dirs]
    if len(set(names)) < len(names):
        raise InputError("--runs", f"a run is named twice: {' '.join(names)}")
    runs = [checked_run(run_dir, training) for run_dir in run_dirs]
    check_same_folds(runs)
    training = training.head(runs[0].spec.limit)
    used = {run.name: tta_used(run, tta) for run in runs}
    oof = {label: {run.name: mixed_oof(run, key, training) for run in runs} for key, label in VARIANT_LABELS.items()}
    oof["used"] = {name: oof[VARIANT_LABELS[variant(flag)]][name] for name, flag in used.items()}
    rows = oof["used"][names[0]].index
    for frames in oof.values():
        for frame in frames.values():
            rows = rows.intersection(frame.index)
    if rows.empty:
        raise InputError("--runs", "the runs share no out-of-fold face: finish their folds with `fkp cv`")
    truth, style = training.keypoints[rows.to_numpy()], training.style[rows.to_numpy()]
    fold = oof["used"][names[0]].loc[rows, "fold"].to_numpy()
    members = {column: np.stack([frames[n].loc[rows, list(COORDINATES)].to_numpy() for n in names])
               for column, frames in oof.items()}

    scores = pd.DataFrame({column: [rmse(truth, m) for m in stack] for column, stack in members.items()}, index=names)
    style_scores = pd.DataFrame({name: score(truth, m, style) for name, m in zip(names, members["used"])}).T
    if len(runs) == 1 and not config.by_style:
        weights, method = Weights.average(1, len(COORDINATES)), "fold average"
        blend_scores = scores.iloc[0]
        blended_used = members["used"][0]
    else:
        if len(np.unique(fold)) < 2:
            raise InputError("--runs", "the runs share out-of-fold faces from one fold only: "
                             "scoring a blend needs two; finish more folds")
        method = config.method + (", per annotation style" if config.by_style else "")
        blended = {column: out_of_fold_blend(stack, truth, fold, config, style) for column, stack in members.items()}
        blend_scores = pd.Series({column: rmse(truth, b) for column, b in blended.items()})
        blended_used = blended["used"]
        weights = fit_blend(members["used"], truth, config, style)
    style_scores.loc["blend"] = score(truth, blended_used, style)

    tests = [leaderboard_test(run, used[run.name], allow_partial, training, test_styles) for run in runs]
    image_ids = tests[0].index
    if any(not t.index.equals(image_ids) for t in tests):
        raise InputError("--runs", "the runs predicted different test faces: were they made on the same test set?")
    test_style = None if test_styles is None else test_styles.reindex(image_ids).to_numpy()
    keypoints = pd.DataFrame(weights.apply(np.stack([t.to_numpy() for t in tests]), test_style), index=image_ids,
                             columns=list(COORDINATES))
    return Blend(names, used, method, scores, blend_scores, style_scores, len(rows), weight_table(weights, names),
                 keypoints)


def weight_table(weights: Weights | StyleWeights, names: list[str]) -> pd.DataFrame:
    """Coordinate (or style and coordinate) x (runs..., intercept)."""
    if isinstance(weights, StyleWeights):
        return pd.concat({style: weight_table(w, names) for style, w in weights.by_style.items()}, names=["style"])
    table = pd.DataFrame(weights.coef, index=pd.Index(COORDINATES, name="coordinate"), columns=names)
    return table.assign(intercept=weights.intercept)


def output_paths(out: Path) -> dict[str, Path]:
    """The files written beside the submission ``out``."""
    return {
        "weights": out.with_name(f"{out.stem}_weights.csv"),
        "faces": out.with_name(f"{out.stem}_faces.png"),
        "report": out.with_name(f"{out.stem}_report.md"),
    }


def submitted_face_panels(
    submitted: pd.DataFrame, lookup: pd.DataFrame, test: TestSet, count: int = 16
) -> list[FacePanel]:
    """Test faces with exactly the keypoints submitted for them: half asked for all 30, half for fewer."""
    asked = pd.DataFrame({"ImageId": lookup["ImageId"], "FeatureName": lookup["FeatureName"],
                          "Location": submitted["Location"].to_numpy()})
    located = asked.pivot(index="ImageId", columns="FeatureName", values="Location").reindex(columns=list(COORDINATES))
    counts = located.notna().sum(axis=1)
    chosen = []
    for group in (counts[counts == len(COORDINATES)].index, counts[counts < len(COORDINATES)].index):
        picks = min(count // 2, len(group))
        chosen += list(group[np.linspace(0, len(group) - 1, picks).round().astype(int)]) if picks else []
    position = pd.Series(np.arange(len(test)), index=test.image_ids)
    return [
        FacePanel(test.images[position[i]], located.loc[i].to_numpy(), None, f"ImageId {i} ({counts[i]} asked)")
        for i in chosen
    ]


def write_blend(blend: Blend, lookup: pd.DataFrame, test: TestSet, out: Path) -> tuple[pd.DataFrame, int]:
    """The submission, its weights, a picture of submitted test faces and a report, side by side, once the
    submission passes ``check_submission``; and how many Locations were clipped to the image."""
    result = submission(lookup, blend.keypoints, f"test predictions of run(s) {', '.join(blend.runs)}")
    check_submission(result, lookup, out)
    result, clipped = clip_to_image(result)
    paths = output_paths(out)
    write_csv(result, out)
    write_csv(blend.weights.reset_index(), paths["weights"])
    figure = face_grid(submitted_face_panels(result, lookup, test),
                       f"{out.name}: submitted keypoints on test faces ({' + '.join(blend.runs)})")
    save_png(figure, paths["faces"])
    write_text(blend_report(blend, out, len(result)), paths["report"])
    return result, clipped


def tta_words(tta: bool) -> str:
    return VARIANT_LABELS[variant(tta)]


def score_line(scores: pd.Series) -> str:
    return ", ".join(f"{column} {scores[column]:.4f}" for column in SCORE_COLUMNS)


def style_lines(table: pd.DataFrame) -> str:
    """A markdown table of RMSE by annotation style, a row per run (or blend)."""
    lines = ["| | " + " | ".join(table.columns) + " |", "| --- |" + " ---: |" * len(table.columns)]
    lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for name, row in table.iterrows()]
    return "\n".join(lines)


def blend_report(blend: Blend, out: Path, rows: int) -> str:
    paths = output_paths(out)
    mean_weights = blend.weights.drop(columns="intercept").mean()
    return "\n".join([
        f"# Blend: {out.name}",
        "",
        f"{rows} submission rows from run(s) {', '.join(blend.runs)}; method: {blend.method}.",
        "",
        f"## Out-of-fold RMSE, leaderboard-style, on {blend.faces} faces",
        "",
        *(f"- run {run}: {score_line(blend.scores.loc[run])} (used: {tta_words(blend.tta[run])})"
          for run in blend.runs),
        f"- blend: {score_line(blend.blend_scores)}; each face scored with weights fitted on the other folds",
        "",
        "By annotation style (each face over its labelled coordinates, predictions as used):",
        "",
        style_lines(blend.style_scores),
        "",
        "## Weights",
        "",
        f"Per {' and '.join(blend.weights.index.names)} in [{paths['weights'].name}]({paths['weights'].name}); "
        "mean over them:",
        "",
        *(f"- {run}: {weight:.3f}" for run, weight in mean_weights.items()),
        "",
        "## Figures",
        "",
        f"- [{paths['faces'].name}]({paths['faces'].name}): test faces with the submitted keypoints "
        "(dots; orange the subject's left, blue the subject's right, green the centre line).",
        "",
        f"![submitted keypoints]({paths['faces'].name})",
        "",
    ])
