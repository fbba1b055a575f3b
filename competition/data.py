"""Read and validate a Kaggle download (zips or extracted CSVs), parse pixels vectorised, cache.

The parsed arrays are cached under a key made of the source file's content hash, so a second
load of the same file is a single uncompressed ``.npz`` read.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .io import atomic_path
from .schema import COORDINATES, IMAGE_SIZE, KEYPOINTS, PARTIAL_COORDINATES

PIXELS = IMAGE_SIZE * IMAGE_SIZE
TRAINING, TEST, LOOKUP = "training", "test", "IdLookupTable"
_CHUNK_ROWS = 256  # rows parsed at once: bounds the parser's temporary arrays to ~100 MB
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


@dataclass(frozen=True)
class TrainingSet:
    images: np.ndarray  # (N, 96, 96) uint8
    keypoints: np.ndarray  # (N, 30) float32 in COORDINATES order, NaN where missing
    fingerprint: str  # content hash of the parsed arrays: identifies the data, not the file format

    def __len__(self) -> int:
        return len(self.images)

    @property
    def is_full_label(self) -> np.ndarray:
        """The annotation style: True where a face has any keypoint beyond the partial four."""
        partial = np.isin(COORDINATES, PARTIAL_COORDINATES)
        return ~np.isnan(self.keypoints[:, ~partial]).all(axis=1)

    def head(self, n: int | None) -> TrainingSet:
        return self if n is None else TrainingSet(self.images[:n], self.keypoints[:n], self.fingerprint)


@dataclass(frozen=True)
class TestSet:
    image_ids: np.ndarray  # (M,) int64
    images: np.ndarray  # (M, 96, 96) uint8

    def __len__(self) -> int:
        return len(self.images)


def bundled_sample() -> Path:
    """A small real sample (300 training faces, 60 test faces) shipped with the package."""
    return Path(str(resources.files(__package__).joinpath("sample")))


def resolve_data_dir(data: Path | None, default: Path = Path("data")) -> tuple[Path, bool]:
    """The folder to read and whether it is the bundled sample (no --data, no files in ./data)."""
    if data is not None:
        return data, False
    if (default / "IdLookupTable.csv").exists():
        return default, False
    return bundled_sample(), True


def cache_dir() -> Path:
    return Path(os.environ.get("FKP_CACHE_DIR", Path.home() / ".cache" / "fkp"))


def _source(data_dir: Path, stem: str) -> Path:
    """The CSV, or else the zip holding it, for one of the competition's files."""
    if not data_dir.is_dir():
        raise InputError(data_dir, "data folder not found")
    for candidate in (data_dir / f"{stem}.csv", data_dir / f"{stem}.zip"):
        if candidate.is_file():
            return candidate
    raise InputError(data_dir / f"{stem}.csv", f"missing: put {stem}.csv or {stem}.zip in {data_dir}")


def _read_csv(path: Path, stem: str) -> tuple[pd.DataFrame, str]:
    """All columns as strings; the name to use in messages (``x.zip:x.csv`` for a zip member)."""
    label = str(path)
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                member = f"{stem}.csv"
                if member not in archive.namelist():
                    raise InputError(path, f"zip does not hold {member} (it holds {archive.namelist()})")
                label = f"{path}:{member}"
                raw = archive.read(member)
        else:
            raw = path.read_bytes()
    except zipfile.BadZipFile:
        raise InputError(path, "not a valid zip file") from None
    if not raw.strip():
        raise InputError(label, "file is empty")
    frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, na_values=[""])
    if frame.empty:
        raise InputError(label, "file has a header but no rows")
    return frame, label


def _require_columns(frame: pd.DataFrame, label: str, expected: list[str]) -> None:
    columns = list(frame.columns)
    if columns == expected:
        return
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        raise InputError(label, f"columns differ from Kaggle's: missing {missing}, unexpected {extra}")
    raise InputError(label, f"columns out of order: expected {expected}")


def _numeric(frame: pd.DataFrame, label: str, column: str, *, integer: bool = False) -> np.ndarray:
    text = frame[column]
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() & text.notna()
    if integer:
        bad |= text.isna() | (values.notna() & (values != values.round()))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(label, f"{text.iloc[row]!r} is not a number", line=row + 2, column=column)
    return values.to_numpy(dtype=np.float64)


def parse_pixels(strings: np.ndarray, label: str, column: str = "Image") -> np.ndarray:
    """Space-separated grey levels -> (N, 96, 96) uint8, vectorised over the bytes of many rows.

    Each chunk of rows is joined into one byte buffer; digit runs are tokens, and a token's value
    is the sum of its digits times powers of ten, gathered with one ``bincount``.
    """
    images = np.empty((len(strings), PIXELS), np.uint8)
    missing = pd.isna(strings)
    if missing.any():
        raise InputError(label, "pixels missing", line=int(np.flatnonzero(missing)[0]) + 2, column=column)
    for start in range(0, len(strings), _CHUNK_ROWS):
        chunk = strings[start : start + _CHUNK_ROWS]
        buf = np.frombuffer(("\n".join(chunk) + "\n").encode(), np.uint8)
        is_digit = (buf >= ord("0")) & (buf <= ord("9"))
        newline = buf == ord("\n")
        row_of = np.cumsum(newline) - newline  # row (within the chunk) of every byte

        def fail(position: int, message: str) -> None:
            row = start + int(row_of[position])
            raise InputError(label, message, line=row + 2, column=column)

        bad = ~(is_digit | newline | (buf == ord(" ")))
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            token = chunk[row_of[position]].split()
            token = next(t for t in token if not t.isdigit())
            fail(position, f"pixel {token!r} is not a whole number 0..255")
        first = is_digit & ~np.concatenate(([False], is_digit[:-1]))
        last = is_digit & ~np.concatenate((is_digit[1:], [False]))
        tokens_per_row = np.diff(np.concatenate(([0], np.cumsum(first)[newline])))
        wrong = np.flatnonzero(tokens_per_row != PIXELS)
        if wrong.size:
            row = start + int(wrong[0])
            raise InputError(
                label, f"{tokens_per_row[wrong[0]]} pixels, expected {PIXELS} (96x96)", line=row + 2, column=column
            )
        digit_at = np.flatnonzero(is_digit)
        token_of_digit = np.cumsum(first)[digit_at] - 1
        power = np.flatnonzero(last)[token_of_digit] - digit_at
        if power.max() > 2:
            fail(int(digit_at[np.argmax(power > 2)]), "pixel has more than 3 digits: outside 0..255")
        values = np.bincount(token_of_digit, weights=(buf[digit_at] - ord("0")) * 10.0**power)
        if values.max() > 255:
            token = int(np.argmax(values > 255))
            fail(int(np.flatnonzero(first)[token]), f"pixel {int(values[token])} is outside 0..255")
        images[start : start + len(chunk)] = values.reshape(-1, PIXELS)
    return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def _cached(path: Path, kind: str, parse) -> dict[str, np.ndarray]:
    """Arrays parsed from ``path``, from the cache when its content hash was seen before."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    cached = cache_dir() / f"{kind}-v{_CACHE_FORMAT}-{digest}.npz"
    if cached.exists():
        with np.load(cached) as arrays:
            return dict(arrays)
    arrays = parse()
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays


def load_training(data_dir: Path) -> TrainingSet:
    path = _source(data_dir, TRAINING)

    def parse() -> dict[str, np.ndarray]:
        frame, label = _read_csv(path, TRAINING)
        _require_columns(frame, label, [*COORDINATES, "Image"])
        keypoints = np.stack([_numeric(frame, label, c) for c in COORDINATES], axis=1)
        outside = ~np.isnan(keypoints) & ((keypoints < 0) | (keypoints > IMAGE_SIZE))
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise InputError(
                label,
                f"coordinate {keypoints[row, col]} is outside the image (0..{IMAGE_SIZE})",
                line=int(row) + 2,
                column=COORDINATES[col],
            )
        images = parse_pixels(frame["Image"].to_numpy(), label)
        keypoints = keypoints.astype(np.float32)
        fingerprint = hashlib.sha256(images.tobytes() + keypoints.tobytes()).hexdigest()[:16]
        return {"images": images, "keypoints": keypoints, "fingerprint": np.array(fingerprint)}

    arrays = _cached(path, TRAINING, parse)
    return TrainingSet(arrays["images"], arrays["keypoints"], str(arrays["fingerprint"]))


def load_test(data_dir: Path) -> TestSet:
    path = _source(data_dir, TEST)

    def parse() -> dict[str, np.ndarray]:
        frame, label = _read_csv(path, TEST)
        _require_columns(frame, label, ["ImageId", "Image"])
        image_ids = _numeric(frame, label, "ImageId", integer=True).astype(np.int64)
        return {"image_ids": image_ids, "images": parse_pixels(frame["Image"].to_numpy(), label)}

    arrays = _cached(path, TEST, parse)
    return TestSet(arrays["image_ids"], arrays["images"])


def load_lookup(data_dir: Path, test: TestSet) -> pd.DataFrame:
    """IdLookupTable rows (RowId, ImageId, FeatureName), checked against the test set and schema."""
    path = _source(data_dir, LOOKUP)
    frame, label = _read_csv(path, LOOKUP)
    expected = ["RowId", "ImageId", "FeatureName", "Location"]
    _require_columns(frame, label, expected if "Location" in frame.columns else expected[:3])
    lookup = pd.DataFrame(
        {
            "RowId": _numeric(frame, label, "RowId", integer=True).astype(np.int64),
            "ImageId": _numeric(frame, label, "ImageId", integer=True).astype(np.int64),
            "FeatureName": frame["FeatureName"].to_numpy(),
        }
    )
    unknown_image = ~lookup["ImageId"].isin(test.image_ids)
    if unknown_image.any():
        row = int(np.flatnonzero(unknown_image.to_numpy())[0])
        raise InputError(
            label, f"ImageId {lookup['ImageId'].iloc[row]} is not in the test set", line=row + 2, column="ImageId"
        )
    unknown_feature = ~lookup["FeatureName"].isin(COORDINATES)
    if unknown_feature.any():
        row = int(np.flatnonzero(unknown_feature.to_numpy())[0])
        raise InputError(
            label,
            f"FeatureName {lookup['FeatureName'].iloc[row]!r} is not one of the {len(KEYPOINTS)} keypoints' coordinates",
            line=row + 2,
            column="FeatureName",
        )
    return lookup


def write_sample(data_dir: Path, out: Path, training_faces: int, test_faces: int, seed: int) -> None:
    """A small real copy of a competition folder: random training rows, the first test faces,
    and the IdLookupTable / SampleSubmission rows that ask about them, written as Kaggle ships them."""
    training, _ = _read_csv(_source(data_dir, TRAINING), TRAINING)
    test, _ = _read_csv(_source(data_dir, TEST), TEST)
    lookup, _ = _read_csv(_source(data_dir, LOOKUP), LOOKUP)
    rows = np.sort(np.random.default_rng(seed).choice(len(training), training_faces, replace=False))
    test = test.iloc[:test_faces]
    lookup = lookup[lookup["ImageId"].isin(test["ImageId"])]
    out.mkdir(parents=True, exist_ok=True)
    for stem, frame in ((TRAINING, training.iloc[rows]), (TEST, test)):
        with atomic_path(out / f"{stem}.zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{stem}.csv", frame.to_csv(index=False))
    with atomic_path(out / f"{LOOKUP}.csv") as tmp:
        lookup.to_csv(tmp, index=False)
    with atomic_path(out / "SampleSubmission.csv") as tmp:
        pd.DataFrame({"RowId": lookup["RowId"], "Location": 0}).to_csv(tmp, index=False)
