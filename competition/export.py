"""`fkp export`: a whole run as one model, and the model `fkp predict` runs.

The model is built from the run's saved fold models as one Keras functional graph: every fold of
every trained specialist, optionally TTA (the mirrored face's points mapped back and averaged
with the face's, at each shift of the run's ``inference.tta_shift``, and again on the re-framed face with
``inference.reframe``), the fold average, then each coordinate taken from the specialist the run's
``inference.prefer`` picks (or ``choice``: with ``inference.prefer_by_style``, the choice for full-style
faces, the style asked for all 30 coordinates, as a photo's face is), then with ``inference.refine`` the
run's second stage. It computes what `fkp blend`
averages from the fold test files (``blend.leaderboard_test``): raw (N, 96, 96, 1) float32 faces 0..255
in, (N, 30) label pixels out (COORDINATES order).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np

from .errors import InputError
from .io import atomic_path
from .models import layers as fkp_layers
from .predict import Reframe, shift_grid
from .refine import Refinement
from .runs import Run
from .schema import COORDINATES, IMAGE_SIZE, SPECIALISTS, specialist_for

# What each format needs beyond Keras, by importable module, and the extra that installs it.
FORMAT_MODULES = {"keras": (), "saved_model": ("tensorflow",), "onnx": ("tensorflow", "tf2onnx", "onnx")}
EXTRA = "pip install 'fkp[export]'"


def fold_models(run: Run, specialist: str, allow_partial: bool) -> dict[int, keras.Model]:
    """A specialist's saved fold models by fold; a run with unfinished folds is refused unless ``allow_partial``."""
    paths = run.models(specialist)
    missing = run.missing_folds(specialist)
    if missing and not allow_partial:
        raise InputError(run.path / specialist, f"folds {missing} of {run.spec.folds} are missing: finish them "
                         "with `fkp cv --fold K` or pass --allow-partial")
    if not paths:
        raise InputError(run.path / specialist, "no finished fold: run `fkp cv` first")
    return {fold: keras.saving.load_model(path, compile=False) for fold, path in sorted(paths.items())}


def tta_faces(faces, shift: int, prefix: str = "") -> dict[tuple[int, int, bool], object]:
    """Every TTA view of the graph's faces, by (dx, dy, mirrored): ``predict.tta_views``' views."""
    views = {}
    for dx, dy in shift_grid(shift):
        moved = faces if dx == dy == 0 else fkp_layers.ShiftFaces(dx, dy, name=f"{prefix}faces_shifted_{dx}_{dy}")(faces)
        views[dx, dy, False] = moved
        views[dx, dy, True] = fkp_layers.MirrorFaces(name=f"{prefix}mirrored_faces_shifted_{dx}_{dy}")(moved)
    return views


def tta_points(model: keras.Model, views: dict, specialist, mirror_axis: float, prefix: str = ""):
    """A fold model's points averaged over the TTA views, each mapped back to the face: as ``predict_with_tta``."""
    answers = []
    for (dx, dy, mirrored), view in views.items():
        label = f"{prefix}{model.name}_{dx}_{dy}{'_mirrored' if mirrored else ''}"
        points = model(view)
        if mirrored:
            points = fkp_layers.MirroredPointsBack(specialist.flip_permutation, mirror_axis,
                                                   name=f"{label}_mirror_back")(points)
        if dx or dy:
            points = fkp_layers.MovePoints(-dx, -dy, name=f"{label}_moved_back")(points)
        answers.append(points)
    return keras.layers.Average(name=f"{prefix}{model.name}_tta")(answers)


def reframed_tta_points(model: keras.Model, faces, points, reframe: Reframe, shift: int, specialist, mirror_axis: float):
    """``points`` (a fold model's TTA answer) mixed with its answer on the faces re-framed by the fold's
    ``reframe`` (its fold.json): as ``predict_with_tta`` with ``reframe``."""
    name = model.name
    transforms = fkp_layers.Reframing(**reframe.bounds, name=f"{name}_reframing")(points)
    moved = fkp_layers.ReframedFaces(name=f"{name}_reframed_faces")([faces, transforms])
    again = tta_points(model, tta_faces(moved, shift, f"{name}_reframed_"), specialist, mirror_axis, "reframed_")
    back = fkp_layers.ReframedPointsBack(name=f"{name}_reframed_back")([again, transforms])
    return fkp_layers.MixPoints(reframe.weight, name=f"{name}_reframed_mix")([points, back])


def run_model(run: Run, tta: bool, allow_partial: bool = False, choice: dict[str, str] | None = None,
              refinement: Refinement | None = None) -> keras.Model:
    """The whole run as one model: faces (N, 96, 96, 1) 0..255 -> (N, 30) keypoints in label pixels. ``choice``
    names the specialist answering each coordinate (a per-style choice); without it, ``inference.prefer`` decides.
    ``refinement``, the run's second stage, is applied last (a Dense layer holding its weights)."""
    faces = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="faces")
    shift = run.spec.resolved.inference.tta_shift
    views = tta_faces(faces, shift) if tta else {}
    answers = {}
    for name in run.spec.specialists:
        specialist = SPECIALISTS[name]
        reports = run.fold_reports(name)
        folds = []
        for fold, model in fold_models(run, name, allow_partial).items():
            if not tta:
                folds.append(model(faces))
                continue
            points = tta_points(model, views, specialist, run.spec.mirror_axis)
            if "reframe" in reports[fold]:
                points = reframed_tta_points(model, faces, points, Reframe(**reports[fold]["reframe"]), shift,
                                             specialist, run.spec.mirror_axis)
            folds.append(points)
        answers[name] = folds[0] if len(folds) == 1 else keras.layers.Average(name=f"{name}_fold_average")(folds)
    names = list(answers)
    offsets = dict(zip(names, [sum(len(SPECIALISTS[n].coordinates) for n in names[:i]) for i in range(len(names))]))
    columns = []
    for coordinate in COORDINATES:
        source = choice[coordinate] if choice else specialist_for(coordinate, names, run.spec.resolved.inference.prefer)
        columns.append(offsets[source] + SPECIALISTS[source].coordinates.index(coordinate))
    joined = answers[names[0]] if len(names) == 1 else keras.layers.Concatenate(name="specialists")(list(answers.values()))
    keypoints = fkp_layers.TakeColumns(columns, name="keypoints" if refinement is None else "chosen")(joined)
    if refinement is not None:
        refine = keras.layers.Dense(len(COORDINATES), name="keypoints")
        keypoints = refine(keypoints)
        refine.set_weights([w.astype(np.float32) for w in refinement.as_affine()])
    return keras.Model(faces, keypoints, name=f"fkp_{run.name}".replace("-", "_"))


def check_format(format: str) -> None:
    """Refuse a format whose exporter is not installed, before any model loads."""
    missing = [module for module in FORMAT_MODULES[format] if importlib.util.find_spec(module) is None]
    if missing:
        raise InputError("--format", f"{format} export needs {', '.join(missing)}: {EXTRA}")
    if format != "keras" and keras.backend.backend() != "tensorflow":
        raise InputError("--format", f"{format} export needs the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()})")


def export_model(model: keras.Model, format: str, target: Path) -> None:
    """Write ``model`` as ``format`` to ``target`` (a file, or a folder for saved_model), all at once."""
    if format == "saved_model":
        with atomic_path(target, directory=True) as tmp:
            model.export(str(tmp), format="tf_saved_model", verbose=False)
    elif format == "keras":
        with atomic_path(target, keep_suffix=True) as tmp:  # Keras checks the file's suffix
            model.save(tmp)
    else:
        model(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), "float32"))  # Keras' ONNX export wants a model that has run
        with atomic_path(target, keep_suffix=True) as tmp:
            model.export(str(tmp), format="onnx", verbose=False)
