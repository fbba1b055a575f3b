"""A user's corrections to Kaggle's training labels: ``DIR/corrections.csv``, applied whenever DIR's training set
loads (``data.load_training``), so `fkp check` validates it and `fkp cv` trains on it; Kaggle's files are never
modified.

One line per fix, training rows numbered as the folds file numbers them (0-based)::

    row,keypoint,x,y,note
    17,left_eye_center,66.2,38.9,swapped back      # the keypoint's new position
    17,right_eye_center,30.1,37.5,swapped back
    240,mouth_left_corner,,,                       # x and y empty: the keypoint dropped (unlabelled)
    981,all,,,                                     # keypoint "all": the whole face dropped (no label left)

``note`` is optional and free text. A row outside the training set, a keypoint not in the schema, a coordinate
outside the image, one of x and y without the other, or a fix of a row and keypoint already fixed above is
refused in one line naming the file, line and column.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .schema import IMAGE_SIZE, KEYPOINTS

CORRECTIONS = "corrections.csv"  # its name in a data folder
COLUMNS = ["row", "keypoint", "x", "y"]
NOTE = "note"
WHOLE_FACE = "all"


def corrections_path(data_dir: Path) -> Path:
    return data_dir / CORRECTIONS


def read_corrections(path: Path, faces: int) -> pd.DataFrame:
    """The validated fixes of ``path`` for a training set of ``faces`` rows: row (int), keypoint (a name or
    ``all``), x and y (float; NaN for a drop), note, in file order."""
    raw = path.read_bytes()
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(path, f"file is empty: the header is {','.join(COLUMNS)}[,{NOTE}]") from None
    except pd.errors.ParserError as error:
        raise InputError(path, f"not a valid CSV: {str(error).split('C error: ')[-1].strip()}") from None
    except UnicodeDecodeError as error:
        raise InputError(path, f"not UTF-8 text (byte at offset {error.start})") from None
    columns = list(frame.columns)
    if columns[:4] != COLUMNS or columns[4:] not in ([], [NOTE]):
        raise InputError(path, f"columns are {columns}, expected {','.join(COLUMNS)}[,{NOTE}]", line=1)
    if NOTE not in frame:
        frame[NOTE] = ""

    def refuse(index: int, column: str, message: str):
        raise InputError(path, message, line=index + 2, column=column)

    rows, xs, ys = [], [], []
    seen: dict[tuple[int, str], int] = {}
    for index, (row_text, keypoint, x_text, y_text) in enumerate(frame[COLUMNS].itertuples(index=False)):
        row_text, keypoint = row_text.strip(), keypoint.strip()
        if not (row_text.isascii() and row_text.isdigit()) or int(row_text) >= faces:
            refuse(index, "row", f"{row_text!r} is not a training row (0..{faces - 1}, as the folds file numbers them)")
        row = int(row_text)
        if keypoint not in KEYPOINTS and keypoint != WHOLE_FACE:
            refuse(index, "keypoint", f"unknown keypoint {keypoint!r}: one of the schema's {len(KEYPOINTS)} or all")
        point = []
        for column, text in (("x", x_text.strip()), ("y", y_text.strip())):
            if not text:
                point.append(np.nan)
                continue
            try:
                value = float(text)
            except ValueError:
                refuse(index, column, f"{text!r} is not a number")
            if not 0 <= value <= IMAGE_SIZE:
                refuse(index, column, f"coordinate {value:g} is outside the image (0..{IMAGE_SIZE})")
            point.append(value)
        if np.isnan(point).sum() == 1:
            refuse(index, "y" if np.isnan(point[1]) else "x", "give both x and y (a new position) or neither (a drop)")
        if keypoint == WHOLE_FACE and not np.isnan(point).all():
            refuse(index, "x", "a whole face can only be dropped: leave x and y empty")
        for key in [(row, WHOLE_FACE), (row, keypoint)] + (
            [(row, k) for k in KEYPOINTS] if keypoint == WHOLE_FACE else []
        ):
            if key in seen:
                refuse(index, "keypoint", f"row {row}, {key[1]} is already fixed on line {seen[key] + 2}")
        seen[(row, keypoint)] = index
        rows.append(row)
        xs.append(point[0])
        ys.append(point[1])
    return pd.DataFrame(
        {
            "row": np.array(rows, np.int64),
            "keypoint": frame["keypoint"].str.strip(),
            "x": xs,
            "y": ys,
            NOTE: frame[NOTE],
        }
    )


def apply_corrections(keypoints: np.ndarray, corrections: pd.DataFrame) -> np.ndarray:
    """(N, 30) labels with the fixes applied (a copy): new positions set, dropped keypoints and faces NaN."""
    fixed = keypoints.copy()
    for row, keypoint, x, y in corrections[["row", "keypoint", "x", "y"]].itertuples(index=False):
        if keypoint == WHOLE_FACE:
            fixed[row] = np.nan
        else:
            at = 2 * KEYPOINTS.index(keypoint)
            fixed[row, at : at + 2] = (x, y)
    return fixed
