"""`fkp predict`: keypoints on real photographs.

OpenCV's frontal-face Haar cascade (shipped inside opencv-python 4.x, no download) finds the faces.
Each face is framed the way the competition's faces are: a similarity transform puts three anchors
(the eye centres and the bottom lip) where the training labels have them on average, at 96x96 grey
(``framing.toml``, measured by ``measure_framing``), estimated from the detector's box, where training
faces put them inside it. The whole run predicts as `fkp blend` does (``export.run_model``, its stored
inference head for a full-style face), and the keypoints are mapped back to the photo's pixels.

Coordinates in a photo follow the labels' convention: the centre of the top-left pixel is
(FIRST_PIXEL_CENTRE, FIRST_PIXEL_CENTRE), so a 96x96 competition face read with ``detect=False``
gets exactly the numbers a submission would.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from skimage.transform import SimilarityTransform

from .data import TrainingSet
from .errors import InputError
from .io import write_csv
from .plots import photo_figure, save_png
from .schema import COORDINATES, FIRST_PIXEL_CENTRE, IMAGE_SIZE, KEYPOINTS

ANCHORS = ("left_eye_center", "right_eye_center", "mouth_center_bottom_lip")  # labelled on nearly every face
_ANCHOR_INDEX = [KEYPOINTS.index(k) for k in ANCHORS]
CASCADE = "haarcascade_frontalface_default.xml"
# detectMultiScale settings: a face is kept where 6 neighbouring windows agree, at least 32 px wide
SCALE_STEP, MIN_NEIGHBOURS, MIN_FACE = 1.1, 6, 32
# Training faces are close crops: the detector sees them padded by half a face and doubled
CALIBRATION_PAD, CALIBRATION_ZOOM = IMAGE_SIZE // 2, 2
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")  # the detector's box, in array pixels (top-left corner at 0, 0)
PREDICTION_COLUMNS = ("photo", "face", *BOX_COLUMNS, *COORDINATES)  # predictions.csv


@dataclass(frozen=True)
class Framing:
    """Where the anchors (ANCHORS order) sit: in a competition face, in label pixels; in a detector's box, as
    fractions of its width and height."""

    in_face: np.ndarray  # (3, 2)
    in_box: np.ndarray  # (3, 2)


def load_framing() -> Framing:
    """The framing stored with the package (``benchmarks/measure_framing.py`` rewrites it)."""
    stored = tomllib.loads(resources.files(__package__).joinpath("framing.toml").read_text())
    return Framing(np.array([stored["in_face"][k] for k in ANCHORS]), np.array([stored["in_box"][k] for k in ANCHORS]))


def detector() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / CASCADE))


def detect_faces(grey: np.ndarray, cascade: cv2.CascadeClassifier) -> np.ndarray:
    """Face boxes (F, 4) as x, y, width, height in array pixels, left to right."""
    boxes = cascade.detectMultiScale(
        grey, scaleFactor=SCALE_STEP, minNeighbors=MIN_NEIGHBOURS, minSize=(MIN_FACE, MIN_FACE)
    )
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return boxes[np.argsort(boxes[:, 0], kind="stable")]


def measure_framing(training: TrainingSet) -> dict:
    """The anchors' mean label positions over ``training``, and their mean positions inside the detector's box
    on the faces where it finds exactly one face: what ``framing.toml`` holds."""
    cascade = detector()
    anchors = training.keypoints.reshape(len(training), -1, 2)[:, _ANCHOR_INDEX]
    in_box, used = [], 0
    for image, points in zip(training.images, anchors):
        padded = cv2.copyMakeBorder(image, *[CALIBRATION_PAD] * 4, cv2.BORDER_REPLICATE)
        boxes = detect_faces(cv2.resize(padded, None, fx=CALIBRATION_ZOOM, fy=CALIBRATION_ZOOM), cascade)
        if len(boxes) != 1:
            continue
        x, y, w, h = boxes[0] / CALIBRATION_ZOOM - [CALIBRATION_PAD, CALIBRATION_PAD, 0, 0]
        in_box.append((points - FIRST_PIXEL_CENTRE - [x, y]) / [w, h])
        used += 1
    in_face, in_box = np.nanmean(anchors, axis=0), np.nanmean(np.array(in_box), axis=0)
    return {
        "faces": len(training),
        "detected": used,
        "fingerprint": training.fingerprint,
        "in_face": {k: [round(float(v), 3) for v in p] for k, p in zip(ANCHORS, in_face)},
        "in_box": {k: [round(float(v), 4) for v in p] for k, p in zip(ANCHORS, in_box)},
    }


def read_photo(path: Path) -> np.ndarray:
    """A JPEG or PNG photo as RGB (H, W, 3) uint8, grey or colour, its EXIF orientation applied. Read with
    Pillow, which reports a damaged file as an exception rather than on stderr."""
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        with Image.open(path) as image:
            if image.format not in ("JPEG", "PNG"):
                raise InputError(path, f"a {image.format} image: fkp predict reads JPEG and PNG")
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError(path, "not a readable JPEG or PNG image") from None


def photo_paths(paths: list[Path]) -> list[Path]:
    """The photos named: a folder stands for the files in it (not hidden, sorted), a file for itself."""
    expanded = []
    for path in paths:
        if path.is_dir():
            expanded += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            expanded.append(path)
    return expanded


def frame_matrix(anchors: np.ndarray, framing: Framing) -> np.ndarray:
    """The 3x3 similarity taking photo array pixels to face array pixels that best puts ``anchors`` (3, 2),
    in the photo's label pixels, on the framing's."""
    transform = SimilarityTransform.from_estimate(anchors - FIRST_PIXEL_CENTRE, framing.in_face - FIRST_PIXEL_CENTRE)
    return transform.params


def crop_face(grey: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The 96x96 face ``matrix`` frames. A face shrunk more than twofold is first area-averaged down, so it is
    not aliased."""
    scale = np.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    if scale < 0.5:
        shrink = 1 / np.floor(1 / scale)  # a whole factor: INTER_AREA averages whole blocks
        grey = cv2.resize(grey, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        # resized pixel centre a' sits at (a' + 0.5) / shrink - 0.5 of the original
        unshrink = np.array([[1 / shrink, 0, 0.5 / shrink - 0.5], [0, 1 / shrink, 0.5 / shrink - 0.5], [0, 0, 1]])
        matrix = matrix @ unshrink
    return cv2.warpAffine(
        grey, matrix[:2], (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def to_photo(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(30,) keypoints in a framed face's label pixels -> the photo's label pixels."""
    xy = points.reshape(-1, 2) - FIRST_PIXEL_CENTRE
    back = np.linalg.inv(matrix) @ np.vstack([xy.T, np.ones(len(xy))])
    return (back[:2].T + FIRST_PIXEL_CENTRE).reshape(-1)


def box_anchors(box: np.ndarray, framing: Framing) -> np.ndarray:
    """Where a detector's box (x, y, w, h) puts the anchors, in the photo's label pixels."""
    x, y, w, h = box
    return framing.in_box * [w, h] + [x, y] + FIRST_PIXEL_CENTRE


@dataclass(frozen=True)
class PhotoFaces:
    """The faces found in one photo: their detector boxes (F, 4), keypoints (F, 30) in the photo's label pixels,
    and the 96x96 faces predicted on."""

    boxes: np.ndarray
    keypoints: np.ndarray
    faces: np.ndarray


_NO_FACE = (np.empty((0, 4)), np.empty((0, len(COORDINATES))), np.empty((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8))


def find_keypoints(rgb: np.ndarray, predict, framing: Framing, cascade, *, detect: bool = True) -> PhotoFaces:
    """Every face of a photo with its keypoints. ``predict``: (F, 96, 96) uint8 faces -> (F, 30) label pixels."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if not detect:  # a 96x96 crop, framed as it is
        return PhotoFaces(np.array([[0, 0, IMAGE_SIZE, IMAGE_SIZE]], float), predict(grey[None]), grey[None])
    boxes = detect_faces(grey, cascade)
    if not len(boxes):
        return PhotoFaces(*_NO_FACE)
    matrices = [frame_matrix(box_anchors(box, framing), framing) for box in boxes]
    faces = np.stack([crop_face(grey, matrix) for matrix in matrices])
    keypoints = np.stack([to_photo(points, matrix) for points, matrix in zip(predict(faces), matrices)])
    return PhotoFaces(boxes, keypoints, faces)


def prediction_rows(photo: str, found: PhotoFaces) -> pd.DataFrame:
    """predictions.csv's rows of one photo: one per face (numbered from 1), or one with face 0 and no numbers
    when none was found."""
    if not len(found.boxes):
        return pd.DataFrame([{"photo": photo, "face": 0}], columns=list(PREDICTION_COLUMNS))
    frame = pd.DataFrame(np.hstack([found.boxes, found.keypoints]), columns=[*BOX_COLUMNS, *COORDINATES])
    frame.insert(0, "face", np.arange(1, len(frame) + 1))
    frame.insert(0, "photo", photo)
    return frame


def predict_photos(
    paths: list[Path], predict, out: Path, *, detect: bool = True, log=print, warn=print
) -> tuple[pd.DataFrame, list[InputError]]:
    """Keypoints of every face in ``paths``: ``out``/predictions.csv and a PNG per photo. A path that is not a
    readable photo is ``warn``-ed as one line and skipped; it is returned with the others' errors."""
    photos = photo_paths(paths)
    if not photos:
        raise InputError(" ".join(map(str, paths)), "no photo to read (empty folder)")
    framing, cascade = load_framing(), detector()
    rows, errors, stems = [], [], {}
    for path in photos:
        try:
            rgb = read_photo(path)
            if not detect and rgb.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
                raise InputError(
                    path, f"is {rgb.shape[1]}x{rgb.shape[0]}: --no-detect takes {IMAGE_SIZE}x{IMAGE_SIZE} crops"
                )
        except InputError as error:
            errors.append(error)
            warn(error)
            continue
        found = find_keypoints(rgb, predict, framing, cascade, detect=detect)
        rows.append(prediction_rows(str(path), found))
        stems[path.stem] = stems.get(path.stem, 0) + 1
        picture = out / f"{path.stem}{'' if stems[path.stem] == 1 else f'-{stems[path.stem]}'}.png"
        faces = (
            f"{len(found.boxes)} face{'' if len(found.boxes) == 1 else 's'}" if len(found.boxes) else "no face found"
        )
        save_png(photo_figure(rgb, found.boxes, found.keypoints, f"{path.name}: {faces}"), picture)
        log(f"{path}: {faces}; {picture}")
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    write_csv(table, out / "predictions.csv")
    return table, errors
