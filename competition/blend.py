"""`fkp blend`: one or more runs -> OOF-fitted per-coordinate blend -> a Kaggle submission.

A run predicts each coordinate with the specialist that owns it (the leaderboard mix); its test
predictions are the mean over its folds. One run is that fold average. Several runs get weights
per coordinate fitted on their out-of-fold predictions (``blender``), scored out of fold, then
refitted on every OOF face and applied to the test predictions. Runs must share their folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .blender import Weights, fit, out_of_fold
from .config import BlendConfig
from .cv import RunSpec
from .data import TestSet, TrainingSet
from .errors import InputError
from .evaluate import OOF_VARIANTS, leaderboard_mix, oof_variants, read_predictions, rmse
from .io import write_csv, write_text
from .plots import FacePanel, face_grid, save_png
from .schema import COORDINATES, IMAGE_SIZE

FOLD_KEYS = ("fingerprint", "folds", "fold_seed", "limit")  # what makes two runs' folds the same
SCORE_COLUMNS = OOF_VARIANTS


def read_run(run_dir: Path, training: TrainingSet) -> RunSpec:
    """A run's spec, refused when it was trained on other data than ``training``."""
    spec = RunSpec.read(run_dir)
    if spec.fingerprint != training.fingerprint:
        raise InputError(
            run_dir / "run.json",
            f"trained on other data (fingerprint {spec.fingerprint}) than --data holds ({training.fingerprint})",
        )
    return spec


def tta_choice(spec: RunSpec, tta: bool | None) -> dict[str, bool]:
    """Per specialist the run trained, whether its flip-TTA predictions are used: ``tta`` if given, else its config's."""
    return {name: spec.config[name]["train"]["tta"] if tta is None else tta for name in spec.specialists}


def fold_average(run_dir: Path, name: str, folds: int, tta: bool, allow_partial: bool) -> pd.DataFrame:
    """One specialist's test predictions averaged over its finished folds (of ``folds``), indexed by ImageId."""
    predictions = read_predictions(run_dir / name, "test_tta.csv" if tta else "test.csv", "ImageId")
    missing = sorted(set(range(folds)) - set(predictions["fold"]))
    if missing and not allow_partial:
        raise InputError(
            run_dir / name,
            f"folds {missing} of {folds} are missing: finish them with `fkp cv --fold K` "
            "or pass --allow-partial",
        )
    if len(missing) == folds:
        raise InputError(run_dir / name, "no finished fold to blend")
    return predictions.drop(columns="fold").groupby(level=0).mean()


def leaderboard_test(run_dir: Path, folds: int, tta: dict[str, bool], allow_partial: bool) -> pd.DataFrame:
    """A run's test predictions (ImageId x 30 coordinates), each specialist averaged over its folds."""
    return leaderboard_mix(
        {name: fold_average(run_dir, name, folds, flag, allow_partial) for name, flag in tta.items()}
    )


def submission(lookup: pd.DataFrame, keypoints: pd.DataFrame) -> pd.DataFrame:
    """``RowId,Location`` for every lookup row, in its order, from ``keypoints`` (ImageId x coordinates)."""
    keys = pd.MultiIndex.from_arrays([lookup["ImageId"], lookup["FeatureName"]])
    location = keypoints.stack().reindex(keys).to_numpy()
    if np.isnan(location).any():
        raise InputError("test predictions", "no prediction for some asked ImageId: rerun `fkp cv`")
    return pd.DataFrame({"RowId": lookup["RowId"], "Location": np.clip(location, 0, IMAGE_SIZE)})


def check_same_folds(specs: dict[str, RunSpec], run_dirs: dict[str, Path]) -> None:
    """Refuse runs whose out-of-fold rows were not made on the same folds of the same faces."""
    (first, reference), *others = specs.items()
    for name, spec in others:
        differs = [f"{key} {getattr(spec, key)} vs {getattr(reference, key)}"
                   for key in FOLD_KEYS if getattr(spec, key) != getattr(reference, key)]
        if differs:
            raise InputError(
                run_dirs[name] / "run.json",
                f"made on other folds than run {first!r} ({'; '.join(differs)}): only runs on the same folds blend",
            )


@dataclass(frozen=True)
class Blend:
    runs: list[str]
    tta: dict[str, dict[str, bool]]  # run -> specialist -> flip TTA used
    method: str  # "fold average" for one run, else the blend config's method
    scores: pd.DataFrame  # each run's OOF RMSE: a row per run; columns SCORE_COLUMNS
    blend_scores: pd.Series  # the blend's OOF RMSE (weights fitted on other folds), by SCORE_COLUMNS
    faces: int  # out-of-fold faces scored (those every run predicted)
    weights: pd.DataFrame  # coordinate x (runs..., intercept)
    keypoints: pd.DataFrame  # blended test predictions, ImageId x 30 coordinates


def blend_runs(
    run_dirs: list[Path], training: TrainingSet, config: BlendConfig, *, tta: bool | None = None,
    allow_partial: bool = False,
) -> Blend:
    names = [run_dir.name for run_dir in run_dirs]
    if len(set(names)) < len(names):
        raise InputError("--runs", f"a run is named twice: {' '.join(names)}")
    dirs = dict(zip(names, run_dirs))
    specs = {name: read_run(run_dir, training) for name, run_dir in dirs.items()}
    check_same_folds(specs, dirs)
    truth_all = training.head(specs[names[0]].limit).keypoints
    used = {name: tta_choice(spec, tta) for name, spec in specs.items()}
    per_run = {n: oof_variants(dirs[n], used[n]) for n in names}
    oof = {column: {n: per_run[n][column] for n in names} for column in OOF_VARIANTS}
    rows = oof["used"][names[0]].index
    for frames in oof.values():
        for frame in frames.values():
            rows = rows.intersection(frame.index)
    if rows.empty:
        raise InputError("--runs", "the runs share no out-of-fold face: finish their folds with `fkp cv`")
    truth = truth_all[rows.to_numpy()]
    fold = oof["used"][names[0]].loc[rows, "fold"].to_numpy()
    members = {column: np.stack([frames[n].loc[rows, list(COORDINATES)].to_numpy() for n in names])
               for column, frames in oof.items()}

    scores = pd.DataFrame({column: [rmse(truth, m) for m in stack] for column, stack in members.items()}, index=names)
    if len(names) == 1:
        weights, method = Weights.average(1, len(COORDINATES)), "fold average"
        blend_scores = scores.iloc[0]
    else:
        if len(np.unique(fold)) < 2:
            raise InputError("--runs", "the runs share out-of-fold faces from one fold only: "
                             "scoring a blend needs two; finish more folds")
        method = config.method
        blend_scores = pd.Series({column: rmse(truth, out_of_fold(stack, truth, fold, config))
                                  for column, stack in members.items()})
        weights = fit(members["used"], truth, config)

    tests = [leaderboard_test(dirs[n], specs[n].folds, used[n], allow_partial) for n in names]
    image_ids = tests[0].index
    if any(not t.index.equals(image_ids) for t in tests):
        raise InputError("--runs", "the runs predicted different test faces: were they made on the same test set?")
    keypoints = pd.DataFrame(weights.apply(np.stack([t.to_numpy() for t in tests])), index=image_ids,
                             columns=list(COORDINATES))
    weight_table = pd.DataFrame(weights.coef, index=pd.Index(COORDINATES, name="coordinate"), columns=names)
    return Blend(names, used, method, scores, blend_scores, len(rows),
                 weight_table.assign(intercept=weights.intercept), keypoints)


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


def write_blend(blend: Blend, lookup: pd.DataFrame, test: TestSet, out: Path) -> pd.DataFrame:
    """The submission, its weights, a picture of submitted test faces and a report, side by side."""
    result = submission(lookup, blend.keypoints)
    paths = output_paths(out)
    write_csv(result, out)
    write_csv(blend.weights.reset_index(), paths["weights"])
    figure = face_grid(submitted_face_panels(result, lookup, test),
                       f"{out.name}: submitted keypoints on test faces ({' + '.join(blend.runs)})")
    save_png(figure, paths["faces"])
    write_text(blend_report(blend, out, len(result)), paths["report"])
    return result


def tta_words(choice: dict[str, bool]) -> str:
    """"flip TTA", "no TTA", or per specialist when they differ."""
    if len(set(choice.values())) == 1:
        return "flip TTA" if next(iter(choice.values())) else "no TTA"
    return ", ".join(f"{name} {'flip TTA' if used else 'no TTA'}" for name, used in choice.items())


def score_line(scores: pd.Series) -> str:
    return ", ".join(f"{column} {scores[column]:.4f}" for column in SCORE_COLUMNS)


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
        "## Weights",
        "",
        f"Per coordinate in [{paths['weights'].name}]({paths['weights'].name}); mean over coordinates:",
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
