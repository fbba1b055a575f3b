"""Test-time augmentation, as one Keras graph around a fold's model: flips, whole-pixel shifts, and re-framing
(each face predicted again after moving its framing into the middle of the training faces').

The same graph serves `fkp cv` (``predict_with_tta``: a fold's out-of-fold and test predictions), `fkp export`
and `fkp predict` (``fold_tta`` inside the run's model), so every command answers a face the same way. One
graph holding every view is 1.6 times as fast on 2 cores as the views predicted one by one through the model
(``benchmarks/bench_tta.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from .models import layers as fkp_layers
from .schema import IMAGE_SIZE, MIRROR_AXIS, Specialist

# Faces per forward pass (prediction and validation): a batch of 256 of the default network peaks
# ~0.9 GiB higher than one of 64 on TensorFlow's CPU backend (benchmarks/bench_predict.py for speed).
PREDICT_BATCH = 64


def predict_pixels(model: keras.Model, images: np.ndarray, batch_size: int = PREDICT_BATCH, pad: bool = False):
    """(N, 96, 96) uint8 faces -> the model's (N, ...) outputs in pixels (N may be 0; a list for a model of
    several outputs), batch by batch with ``predict_on_batch``: ``model.predict`` builds a data pipeline per
    call. With ``pad``, every batch holds exactly ``batch_size`` faces (the last filled with blank ones, whose
    answers are dropped), so the model's function is traced for one shape only, whatever N."""
    batches = []
    for start in range(0, max(len(images), 1), batch_size):
        batch = images[start : start + batch_size, ..., None].astype(np.float32)
        faces = len(batch)
        if pad and faces < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - faces, *batch.shape[1:]), np.float32)])
        answer = model.predict_on_batch(batch)
        if isinstance(answer, (list, tuple)):
            batches.append([np.asarray(output)[:faces] for output in answer])
        else:
            batches.append(np.asarray(answer)[:faces])
    if isinstance(batches[0], list):
        return [np.concatenate([batch[i] for batch in batches]) for i in range(len(batches[0]))]
    return np.concatenate(batches)


def shift_grid(shift: int) -> list[tuple[int, int]]:
    """The (dx, dy) views of shift TTA: the face itself first, then the rest of the 3x3 grid of whole-pixel
    shifts {-shift, 0, shift}^2 (none without a shift)."""
    steps = (-shift, 0, shift) if shift else (0,)
    return [(0, 0), *((dx, dy) for dy in steps for dx in steps if (dx, dy) != (0, 0))]


@dataclass(frozen=True)
class Reframe:
    """Test-time re-framing: each face's TTA prediction tells its framing; a face framed outside ``bounds``
    (``Reframing``'s arguments: the middle of the fold's training framings, ``FramingRange.bounds``) is moved
    the least way into them and predicted again (TTA too), and the points mapped back are mixed in with
    ``weight``. Tiny faces in a corner and close-ups, which decide much of the RMSE, are then predicted
    where the network has seen most faces."""

    bounds: dict
    weight: float


def tta_faces(faces, shift: int, prefix: str = "") -> dict[tuple[int, int, bool], object]:
    """Every TTA view of the graph's faces, by (dx, dy, mirrored): the face and its mirror at each shift of
    ``shift_grid`` (content moved, edges replicated)."""
    views = {}
    for dx, dy in shift_grid(shift):
        moved = (
            faces if dx == dy == 0 else fkp_layers.ShiftFaces(dx, dy, name=f"{prefix}faces_shifted_{dx}_{dy}")(faces)
        )
        views[dx, dy, False] = moved
        views[dx, dy, True] = fkp_layers.MirrorFaces(name=f"{prefix}mirrored_faces_shifted_{dx}_{dy}")(moved)
    return views


def view_points(
    model: keras.Model, views: dict, specialist: Specialist, mirror_axis: float, prefix: str = "", stacked: bool = False
) -> list:
    """The model's points on each view, mapped back to the face's own pixels: a mirror's points mirrored back
    (left/right partners swapped), a shifted face's moved back. ``stacked``: every view in one pass of the
    network (a batch V times as large: one call instead of V, for a few faces at a time, as `fkp predict` asks)."""
    answers = []
    if stacked and len(views) > 1:
        name = f"{prefix}{model.name}"
        batch = fkp_layers.StackViews(name=f"{name}_views")(list(views.values()))
        each = fkp_layers.UnstackViews(len(views), name=f"{name}_per_view")(model(batch))
    else:
        each = [model(view) for view in views.values()]
    for (dx, dy, mirrored), points in zip(views, each):
        label = f"{prefix}{model.name}_{dx}_{dy}{'_mirrored' if mirrored else ''}"
        if mirrored:
            points = fkp_layers.MirroredPointsBack(
                specialist.flip_permutation, mirror_axis, name=f"{label}_mirror_back"
            )(points)
        if dx or dy:
            points = fkp_layers.MovePoints(-dx, -dy, name=f"{label}_moved_back")(points)
        answers.append(points)
    return answers


def tta_points(
    model: keras.Model, views: dict, specialist: Specialist, mirror_axis: float, prefix: str = "", stacked: bool = False
):
    """The mean of ``view_points``: a network trained on mirrored and shifted faces answers each view a little
    differently, so their mean cancels part of its error."""
    return keras.layers.Average(name=f"{prefix}{model.name}_tta")(
        view_points(model, views, specialist, mirror_axis, prefix, stacked)
    )


def reframed_tta_points(
    model: keras.Model,
    faces,
    points,
    reframe: Reframe,
    shift: int,
    specialist: Specialist,
    mirror_axis: float,
    stacked: bool = False,
):
    """``points`` (a fold model's TTA answer) mixed with its TTA answer on the faces re-framed by ``reframe``,
    mapped back."""
    name = model.name
    transforms = fkp_layers.Reframing(**reframe.bounds, name=f"{name}_reframing")(points)
    moved = fkp_layers.ReframedFaces(name=f"{name}_reframed_faces")([faces, transforms])
    views = tta_faces(moved, shift, f"{name}_reframed_")
    again = tta_points(model, views, specialist, mirror_axis, "reframed_", stacked)
    back = fkp_layers.ReframedPointsBack(name=f"{name}_reframed_back")([again, transforms])
    return fkp_layers.MixPoints(reframe.weight, name=f"{name}_reframed_mix")([points, back])


def fold_tta(
    model: keras.Model,
    faces,
    specialist: Specialist,
    mirror_axis: float = MIRROR_AXIS,
    shift: int = 0,
    reframe: Reframe | None = None,
    views: dict | None = None,
    stacked: bool = False,
):
    """A fold model's TTA answer on the graph's ``faces``: every view of ``tta_faces`` (``views``, where the
    graph's folds share them), then with ``reframe`` the re-framed faces' views mixed in; ``stacked``: each set
    of views in one pass of the network (``view_points``)."""
    points = tta_points(model, views or tta_faces(faces, shift), specialist, mirror_axis, stacked=stacked)
    if reframe is None or not reframe.weight:
        return points
    return reframed_tta_points(model, faces, points, reframe, shift, specialist, mirror_axis, stacked)


def tta_model(
    model: keras.Model,
    specialist: Specialist,
    mirror_axis: float = MIRROR_AXIS,
    shift: int = 0,
    reframe: Reframe | None = None,
) -> keras.Model:
    """One graph answering faces with the model's plain points and its TTA points (``fold_tta``). Build it once
    and predict every set of faces with it: its first call traces it (seconds)."""
    faces = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="faces")
    return keras.Model(faces, [model(faces), fold_tta(model, faces, specialist, mirror_axis, shift, reframe)])


def predict_with_tta(
    model: keras.Model,
    images: np.ndarray,
    specialist: Specialist,
    batch_size: int = PREDICT_BATCH,
    mirror_axis: float = MIRROR_AXIS,
    shift: int = 0,
    reframe: Reframe | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain predictions and TTA ones of faces (N, 96, 96) uint8, through a ``tta_model`` built for them."""
    plain, tta = predict_pixels(tta_model(model, specialist, mirror_axis, shift, reframe), images, batch_size)
    return plain, tta
