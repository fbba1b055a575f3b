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
import zipfile
from pathlib import Path

import keras
import numpy as np

from .errors import InputError
from .io import atomic_path
from .models import layers as fkp_layers
from .run import Run, variant
from .schema import IMAGE_SIZE, SPECIALISTS
from .tta import Reframe, fold_tta, predict_pixels, tta_faces

# What each format needs beyond Keras, by importable module, and the extra that installs it.
FORMAT_MODULES = {"keras": (), "saved_model": ("tensorflow",), "onnx": ("tensorflow", "tf2onnx", "onnx")}
EXTRA = "pip install 'fkp[export]'"


def load_fold_model(path: Path, coordinates: int) -> keras.Model:
    """A fold's saved model, refused in one line naming it when it cannot be read (a file cut short while it was
    copied or written, a damaged archive) or is not a model of 96x96 faces in and ``coordinates`` out."""
    remedy = "delete the fold's folder and rerun `fkp cv` to train it again"
    if not path.is_file():
        raise InputError(path, f"missing: {remedy}")
    if not zipfile.is_zipfile(path):
        raise InputError(path, f"not a whole .keras archive (cut short while it was copied or written?): {remedy}")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001  (a damaged archive fails anywhere: zipfile, h5py, json, Keras)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise InputError(path, f"not a readable Keras model ({reason}): {remedy}") from None
    inputs, outputs = getattr(model, "inputs", None) or [], getattr(model, "outputs", None) or []
    shapes = [tuple(ends[0].shape) if len(ends) == 1 else None for ends in (inputs, outputs)]
    if shapes != [(None, IMAGE_SIZE, IMAGE_SIZE, 1), (None, coordinates)]:
        raise InputError(
            path,
            f"damaged: a model of {shapes[0]} in and {shapes[1]} out, not 96x96 faces in and {coordinates} "
            f"coordinates out: {remedy}",
        )
    return model


def fold_models(run: Run, specialist: str, allow_partial: bool) -> dict[int, keras.Model]:
    """A specialist's saved fold models by fold; a run with unfinished folds is refused unless ``allow_partial``."""
    run.usable_folds(specialist, allow_partial)
    coordinates = len(SPECIALISTS[specialist].coordinates)
    return {fold: load_fold_model(path, coordinates) for fold, path in sorted(run.models(specialist).items())}


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
            reframe = fold_reframe(run, name, fold, reports[fold])
            specialist, axis = SPECIALISTS[name], run.spec.mirror_axis
            folds.append(
                fold_tta(model, faces, specialist, axis, shift, reframe, views, stacked=True) if tta else model(faces)
            )
        answers[name] = folds[0] if len(folds) == 1 else keras.layers.Average(name=f"{name}_fold_average")(folds)
    try:
        keypoints = head.to_keras(answers, style="full")
    except (KeyError, IndexError, TypeError, ValueError) as error:  # loaded whole, but not the head fkp cv fits
        raise InputError(
            run.head_path, f"damaged ({type(error).__name__}: {error}): rerun `fkp cv` on the run to fit it again"
        ) from None
    try:
        return keras.Model(faces, keypoints, name=f"fkp_{run.name}".replace("-", "_"))
    except ValueError as error:  # fold models that cannot stand side by side: a fold folder copied over another
        raise InputError(run.path, f"its fold models do not make one model ({error}): retrain the run") from None


def fold_reframe(run: Run, specialist: str, fold: int, report: dict) -> Reframe | None:
    """The test-time re-framing a fold's fold.json records (none if it records none), refused in one line when
    it is not the bounds and weight fkp wrote."""
    if "reframe" not in report:
        return None
    path = run.fold_dir(specialist, fold) / "fold.json"
    recorded = report["reframe"]
    try:
        reframe = Reframe(**recorded)
        layer = fkp_layers.Reframing(**reframe.bounds)  # the bounds the layer takes, as numbers
        numbers = [*layer.eye_distance, *layer.angle, *layer.midpoint_x, *layer.midpoint_y, float(reframe.weight)]
        if isinstance(reframe.weight, bool) or not np.isfinite(numbers).all():
            raise ValueError("not finite numbers")
    except Exception as error:  # noqa: BLE001  (any shape a damaged record takes)
        raise InputError(
            path, f"damaged reframe record ({type(error).__name__}: {error}): delete the fold and rerun `fkp cv`"
        ) from None
    return reframe


def check_target(format: str, target: Path) -> None:
    """Refuse an ``--out`` that the export could not write, or would write over something fkp did not write,
    before any model loads: a folder where a file goes, a file where a folder goes, a file without the format's
    suffix, a path below a file."""
    suffix = {"keras": ".keras", "onnx": ".onnx"}.get(format)
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(parent, "is a file, not a folder: choose another --out")
    if suffix is None:  # saved_model: a folder, replaced only when it holds a SavedModel fkp wrote
        if target.exists() and not target.is_dir():
            raise InputError(target, "is a file: a SavedModel is a folder; choose another --out")
        if target.is_dir() and any(target.iterdir()) and not (target / "saved_model.pb").is_file():
            raise InputError(
                target, "is a folder that holds no SavedModel: fkp export replaces only its own; choose another --out"
            )
        return
    if target.is_dir():
        raise InputError(target, f"is a folder: name the {format} file to write, ending {suffix}")
    if target.suffix != suffix:
        raise InputError(target, f"a {format} model's file name ends {suffix}: choose another --out")


# Faces per forward pass of `fkp predict`: every pass holds exactly this many (``predict_pixels``'s ``pad``), so
# the run's model is traced once, when it is built, not again on the first photo or on each new number of faces.
PHOTO_BATCH = 1


def face_predictor(model: keras.Model, batch_size: int = PHOTO_BATCH):
    """``faces (F, 96, 96) uint8 -> (F, 30)`` through ``model``, in fixed batches, its function traced here."""

    def predict(faces: np.ndarray) -> np.ndarray:
        return predict_pixels(model, faces, batch_size, pad=True)

    predict(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
    return predict


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
