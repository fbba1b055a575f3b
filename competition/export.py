"""`fkp export`: a whole run as one model, and the model `fkp predict` runs.

The model is built from the run's saved fold models as one Keras functional graph: every fold of
every trained specialist, optionally TTA (the mirrored face's points mapped back and averaged
with the face's, at each shift of the run's ``inference.tta_shift``, and again on the re-framed face with
``inference.reframe``), the fold average, then the run's stored inference head as layers
(``head.RunHead.to_keras``) for a full-style face, the style asked for all 30 coordinates, as a photo's
face is. It computes what `fkp blend` answers from the fold test files (``blend.test_answers``):
raw (N, 96, 96, 1) float32 faces 0..255 in, (N, 30) label pixels out (COORDINATES order).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np

from .errors import InputError
from .io import atomic_path
from .run import Run, variant
from .schema import IMAGE_SIZE, SPECIALISTS
from .tta import Reframe, fold_tta, tta_faces

# What each format needs beyond Keras, by importable module, and the extra that installs it.
FORMAT_MODULES = {"keras": (), "saved_model": ("tensorflow",), "onnx": ("tensorflow", "tf2onnx", "onnx")}
EXTRA = "pip install 'fkp[export]'"


def fold_models(run: Run, specialist: str, allow_partial: bool) -> dict[int, keras.Model]:
    """A specialist's saved fold models by fold; a run with unfinished folds is refused unless ``allow_partial``."""
    run.usable_folds(specialist, allow_partial)
    return {fold: keras.saving.load_model(path, compile=False) for fold, path in sorted(run.models(specialist).items())}


def run_model(run: Run, tta: bool, allow_partial: bool = False) -> keras.Model:
    """The whole run as one model: faces (N, 96, 96, 1) 0..255 -> (N, 30) keypoints in label pixels, answered by
    the run's stored inference head."""
    head = run.head(variant(tta))
    faces = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="faces")
    shift = run.spec.resolved.inference.tta_shift
    views = tta_faces(faces, shift) if tta else None  # shared by every fold model
    answers = {}
    for name in run.spec.specialists:
        reports = run.fold_reports(name)
        folds = []
        for fold, model in fold_models(run, name, allow_partial).items():
            reframe = Reframe(**reports[fold]["reframe"]) if "reframe" in reports[fold] else None
            specialist, axis = SPECIALISTS[name], run.spec.mirror_axis
            folds.append(fold_tta(model, faces, specialist, axis, shift, reframe, views) if tta else model(faces))
        answers[name] = folds[0] if len(folds) == 1 else keras.layers.Average(name=f"{name}_fold_average")(folds)
    keypoints = head.to_keras(answers, style="full")
    return keras.Model(faces, keypoints, name=f"fkp_{run.name}".replace("-", "_"))


def check_format(format: str) -> None:
    """Refuse a format whose exporter is not installed, before any model loads."""
    missing = [module for module in FORMAT_MODULES[format] if importlib.util.find_spec(module) is None]
    if missing:
        raise InputError("--format", f"{format} export needs {', '.join(missing)}: {EXTRA}")
    if format != "keras" and keras.backend.backend() != "tensorflow":
        raise InputError(
            "--format", f"{format} export needs the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()})"
        )


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
