"""`fkp blend`: one or more runs -> OOF-fitted per-coordinate blend -> a Kaggle submission.

A run answers a test face with its stored inference head (``head.RunHead``, fitted by `fkp cv`) applied
to its specialists' test predictions averaged over its folds. One run is that answer. Several runs get
``head.BlendWeights`` fitted on their out-of-fold answers, scored out of fold (``head.cross_fit_predict``),
then refitted on every out-of-fold face and applied to the test answers. Runs must share their folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import BlendConfig
from .data import TestSet, TrainingSet
from .errors import InputError
from .evaluate import oof_answers, rmse, score
from .head import ALL, BlendWeights, cross_fit_predict
from .io import write_csv, write_text
from .plots import FacePanel, face_grid, save_png
from .run import VARIANT_LABELS, Run, checked_run, tta_words, variant
from .schema import COORDINATES, IMAGE_SIZE

FOLD_KEYS = ("fingerprint", "folds", "fold_seed", "limit")  # what makes two runs' folds the same
SCORE_COLUMNS = (*VARIANT_LABELS.values(), "used")


def test_answers(run: Run, tta: bool, allow_partial: bool, test_styles: pd.Series) -> pd.DataFrame:
    """A run's answers on the test faces (ImageId x 30 coordinates): its stored head applied to its
    specialists' fold averages, each face as its style asks (``test_styles``: ImageId -> style)."""
    image_ids, predictions = run.test_stack(variant(tta), allow_partial)
    style = test_styles.reindex(image_ids).to_numpy()
    answers = run.head(variant(tta)).predict(predictions, style)
    return pd.DataFrame(answers, index=image_ids, columns=list(COORDINATES))


def submission(lookup: pd.DataFrame, keypoints: pd.DataFrame, source: str) -> pd.DataFrame:
    """``RowId,Location`` for every lookup row, in its order, from ``keypoints`` (ImageId x coordinates)
    predicted by ``source``; unclipped."""
    rows = keypoints.index.get_indexer(lookup["ImageId"])
    if (rows < 0).any():
        first = int(np.flatnonzero(rows < 0)[0])
        raise InputError(
            source,
            f"no prediction for test ImageId {lookup['ImageId'].iloc[first]}, which "
            f"IdLookupTable asks for (RowId {lookup['RowId'].iloc[first]}): rerun `fkp cv`",
        )
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
        raise InputError(
            out,
            f"Location of RowId {result['RowId'].iloc[row]} would be {result['Location'].iloc[row]}, "
            f"not a finite number ({(~finite).sum()} such rows): not written; check the runs' "
            "test predictions and blend weights",
        )


def clip_to_image(result: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Locations outside the image moved to its edge, and how many were."""
    location = result["Location"]
    outside = int(((location < 0) | (location > IMAGE_SIZE)).sum())
    return result.assign(Location=location.clip(0, IMAGE_SIZE)), outside


def check_same_folds(runs: list[Run]) -> None:
    """Refuse runs whose out-of-fold rows were not made on the same folds of the same faces."""
    first, *others = runs
    for run in others:
        differs = [
            f"{key} {getattr(run.spec, key)} vs {getattr(first.spec, key)}"
            for key in FOLD_KEYS
            if getattr(run.spec, key) != getattr(first.spec, key)
        ]
        if differs:
            raise InputError(
                run.spec_path,
                f"made on other folds than run {first.name!r} ({'; '.join(differs)}): "
                "only runs on the same folds blend",
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
    run_dirs: list[Path],
    training: TrainingSet,
    config: BlendConfig,
    *,
    tta: bool | None = None,
    allow_partial: bool = False,
    test_styles: pd.Series,
) -> Blend:
    """Score and blend runs; ``test_styles``: ImageId -> style, from IdLookupTable."""
    names = [run_dir.name for run_dir in run_dirs]
    if len(set(names)) < len(names):
        raise InputError("--runs", f"a run is named twice: {' '.join(names)}")
    runs = [checked_run(run_dir, training) for run_dir in run_dirs]
    check_same_folds(runs)
    training = training.head(runs[0].spec.limit)
    used = {run.name: run.tta_used(tta) for run in runs}
    oof = {label: {run.name: oof_answers(run, key, training) for run in runs} for key, label in VARIANT_LABELS.items()}
    oof["used"] = {name: oof[VARIANT_LABELS[variant(flag)]][name] for name, flag in used.items()}
    rows = oof["used"][names[0]].index
    for frames in oof.values():
        for frame in frames.values():
            rows = rows.intersection(frame.index)
    if rows.empty:
        raise InputError("--runs", "the runs share no out-of-fold face: finish their folds with `fkp cv`")
    truth, style = training.keypoints[rows.to_numpy()], training.style[rows.to_numpy()]
    fold = oof["used"][names[0]].loc[rows, "fold"].to_numpy()
    members = {
        column: np.stack([frames[n].loc[rows, list(COORDINATES)].to_numpy() for n in names])
        for column, frames in oof.items()
    }

    scores = pd.DataFrame({column: [rmse(truth, m) for m in stack] for column, stack in members.items()}, index=names)
    style_scores = pd.DataFrame({name: score(truth, m, style) for name, m in zip(names, members["used"])}).T
    if len(runs) == 1 and not config.by_style:
        weights, method = BlendWeights.average(1), "fold average"
        blend_scores = scores.iloc[0]
        blended_used = members["used"][0]
    else:
        if len(np.unique(fold)) < 2:
            raise InputError(
                "--runs",
                "the runs share out-of-fold faces from one fold only: scoring a blend needs two; finish more folds",
            )
        method = config.method + (", per annotation style" if config.by_style else "")
        blender = BlendWeights.from_config(config)
        blended = {column: cross_fit_predict(blender, stack, truth, style, fold) for column, stack in members.items()}
        blend_scores = pd.Series({column: rmse(truth, b) for column, b in blended.items()})
        blended_used = blended["used"]
        weights = blender.clone().fit(members["used"], truth, style)
    style_scores.loc["blend"] = score(truth, blended_used, style)

    tests = [test_answers(run, used[run.name], allow_partial, test_styles) for run in runs]
    image_ids = tests[0].index
    if any(not t.index.equals(image_ids) for t in tests):
        raise InputError("--runs", "the runs predicted different test faces: were they made on the same test set?")
    keypoints = pd.DataFrame(
        weights.predict(np.stack([t.to_numpy() for t in tests]), test_styles.reindex(image_ids).to_numpy()),
        index=image_ids,
        columns=list(COORDINATES),
    )
    return Blend(
        names, used, method, scores, blend_scores, style_scores, len(rows), weight_table(weights, names), keypoints
    )


def weight_table(weights: BlendWeights, names: list[str]) -> pd.DataFrame:
    """Coordinate (or style and coordinate) x (runs..., intercept)."""
    tables = {
        key: pd.DataFrame(coef, index=pd.Index(COORDINATES, name="coordinate"), columns=names).assign(
            intercept=weights.intercept_[key]
        )
        for key, coef in weights.coef_.items()
    }
    return tables[ALL] if ALL in tables else pd.concat(tables, names=["style"])


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
    asked = pd.DataFrame(
        {
            "ImageId": lookup["ImageId"],
            "FeatureName": lookup["FeatureName"],
            "Location": submitted["Location"].to_numpy(),
        }
    )
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
    figure = face_grid(
        submitted_face_panels(result, lookup, test),
        f"{out.name}: submitted keypoints on test faces ({' + '.join(blend.runs)})",
    )
    save_png(figure, paths["faces"])
    write_text(blend_report(blend, out, len(result)), paths["report"])
    return result, clipped


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
    return "\n".join(
        [
            f"# Blend: {out.name}",
            "",
            f"{rows} submission rows from run(s) {', '.join(blend.runs)}; method: {blend.method}.",
            "",
            f"## Out-of-fold RMSE, leaderboard-style, on {blend.faces} faces",
            "",
            *(
                f"- run {run}: {score_line(blend.scores.loc[run])} (used: {tta_words(blend.tta[run])})"
                for run in blend.runs
            ),
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
        ]
    )
