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
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps
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


# A photo is worked on with its longest side at most MAX_SIDE px (larger ones are downscaled as they are decoded, a
# JPEG by its decoder at 1/2 to 1/8): a face of the smallest size the detector finds (MIN_FACE) in it is still as
# wide as the model's 96x96 face in a photo of 3 times the side, and memory stays bounded (a 50-megapixel photo
# takes about what a 2.6-megapixel one does). A header claiming more than MAX_PIXELS is refused before decoding.
MAX_SIDE = 1600
MAX_PIXELS = 150_000_000  # under Pillow's own decompression-bomb limit (2 x 89.5 megapixels), so this rule speaks
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # grey 16-bit PNGs: 0..65535


@dataclass(frozen=True)
class Photo:
    """A photo as fkp predict works on it: RGB (H, W, 3) uint8, downscaled to at most MAX_SIDE; the photo's own
    size (width, height, upright) and the factors (x, y) from its pixels to these (1 where not downscaled)."""

    rgb: np.ndarray
    size: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)

    def in_photo(self, found: PhotoFaces) -> PhotoFaces:
        """``found`` (boxes and keypoints in these pixels) in the photo's own pixels."""
        if self.scale == (1.0, 1.0) or not len(found.boxes):
            return found
        scale = np.array(self.scale)
        boxes = found.boxes / np.tile(scale, 2)  # edges: the box's corner and sides
        centres = found.keypoints.reshape(len(found.keypoints), -1, 2) - FIRST_PIXEL_CENTRE + 0.5  # pixel centres
        keypoints = (centres / scale - 0.5 + FIRST_PIXEL_CENTRE).reshape(found.keypoints.shape)
        return PhotoFaces(boxes, keypoints, found.faces)


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grey image as 8-bit grey (Pillow would clip it to 255 instead); others as they are."""
    if image.mode not in _SIXTEEN_BIT:
        return image
    return Image.fromarray((np.asarray(image, dtype=np.float64) / 257).clip(0, 255).round().astype(np.uint8))


def _decoded(path: Path, image: Image.Image) -> Photo:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InputError(
            path,
            f"its header claims {width}x{height} pixels: fkp predict reads photos up to "
            f"{MAX_PIXELS // 10**6} megapixels",
        )
    turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap width and height
    upright = (height, width) if turned else (width, height)
    shrink = min(1.0, MAX_SIDE / max(upright))
    target = tuple(max(1, round(side * shrink)) for side in upright)
    if shrink < 1 and image.format == "JPEG":
        image.draft("RGB", (target[1], target[0]) if turned else target)  # decoded at a reduced scale, not larger
    image = _eight_bit(ImageOps.exif_transpose(image))
    factor = int(min(image.size[0] / target[0], image.size[1] / target[1]))
    if factor >= 2 and image.mode in ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F"):
        image = image.reduce(factor)  # whole blocks averaged, before the colour conversion
    image = image.convert("RGB")
    if image.size != target:
        image = image.resize(target, Image.Resampling.BOX)
    return Photo(np.asarray(image), upright, (target[0] / upright[0], target[1] / upright[1]))


def read_photo(path: Path) -> Photo:
    """A JPEG or PNG photo, grey (8 or 16 bits), colour (RGB, CMYK, palette) or with alpha (dropped), its EXIF
    orientation applied, downscaled to at most MAX_SIDE. Read with Pillow, which reports a damaged file as an
    exception rather than on stderr; whatever a damaged file makes the decoder raise is one line naming it."""
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS speaks instead
            with Image.open(path) as image:
                if image.format not in ("JPEG", "PNG"):
                    raise InputError(path, f"a {image.format} image: fkp predict reads JPEG and PNG")
                return _decoded(path, image)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(
            path, f"its header claims more than {MAX_PIXELS // 10**6} megapixels: fkp predict reads photos up to that"
        ) from None
    except Exception:  # noqa: BLE001  (a damaged file may fail anywhere in a decoder: OSError, SyntaxError, ...)
        raise InputError(path, "not a readable JPEG or PNG image") from None


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or lies below one, before any model loads."""
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise InputError(folder, "is a file, not a folder: --out names the folder for predictions.csv and pictures")


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
            photo = read_photo(path)
            if not detect and photo.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise InputError(
                    path, f"is {photo.size[0]}x{photo.size[1]}: --no-detect takes {IMAGE_SIZE}x{IMAGE_SIZE} crops"
                )
        except InputError as error:
            errors.append(error)
            warn(error)
            continue
        found = find_keypoints(photo.rgb, predict, framing, cascade, detect=detect)
        rows.append(prediction_rows(str(path), photo.in_photo(found)))
        stems[path.stem] = stems.get(path.stem, 0) + 1
        picture = out / f"{path.stem}{'' if stems[path.stem] == 1 else f'-{stems[path.stem]}'}.png"
        faces = (
            f"{len(found.boxes)} face{'' if len(found.boxes) == 1 else 's'}" if len(found.boxes) else "no face found"
        )
        save_png(photo_figure(photo.rgb, found.boxes, found.keypoints, f"{path.name}: {faces}"), picture)
        log(f"{path}: {faces}; {picture}")
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    write_csv(table, out / "predictions.csv")
    return table, errors
