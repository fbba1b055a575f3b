"""Read and validate a Kaggle download (zips or extracted CSVs), parse pixels vectorised, cache.

The parsed arrays are cached under a key made of the source file's content hash, so a second
load of the same file is a single uncompressed ``.npz`` read.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from isal import isal_zlib

from .corrections import apply_corrections, corrections_path, read_corrections
from .errors import InputError
from .io import atomic_path, write_csv
from .schema import COORDINATES, IMAGE_SIZE, KEYPOINTS, style_of

PIXELS = IMAGE_SIZE * IMAGE_SIZE
TRAINING, TEST, LOOKUP = "training", "test", "IdLookupTable"
_CHUNK_ROWS = 64  # rows parsed at once: ~2 MB of text (benchmarks/bench_load.py)
_CACHE_FORMAT = 2  # bump when the cached arrays change meaning or what a parse refuses (2: duplicate ImageIds)


@dataclass(frozen=True)
class TrainingSet:
    images: np.ndarray  # (N, 96, 96) uint8
    keypoints: np.ndarray  # (N, 30) float32 in COORDINATES order, NaN where missing
    fingerprint: str  # content hash of the parsed arrays: identifies the data, not the file format
    # where DIR/corrections.csv was applied: Kaggle's labels as the file has them, their fingerprint, and how many
    # fixes there were (None, None, 0 without corrections)
    uncorrected: np.ndarray | None = None
    source_fingerprint: str | None = None
    corrections: int = 0

    def __len__(self) -> int:
        return len(self.images)

    @property
    def source(self) -> TrainingSet:
        """The training set as Kaggle's files hold it, before corrections: the folds split its faces, which
        corrections never change, so runs with and without corrections share them."""
        if self.uncorrected is None:
            return self
        return TrainingSet(self.images, self.uncorrected, self.source_fingerprint)

    @property
    def style(self) -> np.ndarray:
        """Each face's annotation style (a name in schema.STYLES), read from which keypoints it has."""
        return style_of(~np.isnan(self.keypoints))

    def head(self, n: int | None) -> TrainingSet:
        if n is None:
            return self
        uncorrected = None if self.uncorrected is None else self.uncorrected[:n]
        return TrainingSet(
            self.images[:n],
            self.keypoints[:n],
            self.fingerprint,
            uncorrected,
            self.source_fingerprint,
            self.corrections,
        )


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


def _parse_csv(raw: bytes, label: str) -> pd.DataFrame:
    """All columns as strings, the empty ones NaN. pyarrow's multi-threaded reader takes the
    9,216-number pixel strings an order of magnitude faster than pandas' own C tokenizer; rows it
    refuses (Kaggle's IdLookupTable leaves out the empty trailing Location) go to the C reader."""
    options = dict(dtype=str, keep_default_na=False, na_values=[""])
    try:
        try:
            return pd.read_csv(io.BytesIO(raw), engine="pyarrow", **options)
        except pd.errors.ParserError:
            pass
        except pd.errors.EmptyDataError:
            raise InputError(label, "no header line: not a CSV of Kaggle's") from None
        try:
            return pd.read_csv(io.BytesIO(raw), engine="c", **options)
        except pd.errors.ParserError as error:
            raise InputError(label, f"not a valid CSV: {str(error).split('C error: ')[-1].strip()}") from None
    except UnicodeDecodeError:
        start = _first_non_utf8(raw)
        raise InputError(
            label,
            f"byte {raw[start : start + 1]!r} at offset {start} is not UTF-8 text: Kaggle's files are plain ASCII CSV",
            line=raw.count(b"\n", 0, start) + 1,
        ) from None


def _first_non_utf8(raw: bytes) -> int:
    try:
        raw.decode()
    except UnicodeDecodeError as error:
        return error.start
    return 0


def _unzip(archive: zipfile.ZipFile, member: str) -> bytes:
    """A zip member's bytes; a deflated one inflated by ISA-L, about 2.3x less CPU than zlib for
    training.zip (benchmarks/bench_load.py), and checked against its CRC as zipfile checks it."""
    info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_DEFLATED or info.flag_bits & 0x1:  # stored or encrypted
        return archive.read(member)
    archive.fp.seek(info.header_offset)
    header = struct.unpack(zipfile.structFileHeader, archive.fp.read(zipfile.sizeFileHeader))
    archive.fp.seek(header[10] + header[11], os.SEEK_CUR)  # skip the local file name and extra field
    raw = isal_zlib.decompress(archive.fp.read(info.compress_size), -isal_zlib.MAX_WBITS)
    if len(raw) != info.file_size or isal_zlib.crc32(raw) != info.CRC:
        raise zipfile.BadZipFile(f"bad CRC or size for {member}")
    return raw


def _read_csv(path: Path, stem: str, content: bytes | None = None) -> tuple[pd.DataFrame, str]:
    """All columns as strings; the name to use in messages (``x.zip:x.csv`` for a zip member).

    ``content``: the file's bytes, when the caller has read them already.
    """
    label = str(path)
    content = path.read_bytes() if content is None else content
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                member = f"{stem}.csv"
                if member not in archive.namelist():
                    raise InputError(path, f"zip does not hold {member} (it holds {archive.namelist()})")
                label = f"{path}:{member}"
                raw = _unzip(archive, member)
        else:
            raw = content
    except (zipfile.BadZipFile, isal_zlib.error) as error:
        raise InputError(path, f"not a valid zip file ({error})") from None
    if not raw or raw.isspace():  # isspace stops at the first other byte; strip() would copy
        raise InputError(label, "file is empty")
    frame = _parse_csv(raw, label)
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
        raise InputError(label, f"columns differ from Kaggle's: missing {_few(missing)}, unexpected {_few(extra)}")
    at = next(i for i, (seen, wanted) in enumerate(zip(columns, expected)) if seen != wanted)
    raise InputError(
        label, f"columns out of order: column {at + 1} is {columns[at]!r}, Kaggle's is {expected[at]!r}", line=1
    )


def _few(names: list, shown: int = 4) -> str:
    """A list of column names for a message: the first few, each cut short."""
    words = [_shown(str(name)) for name in names[:shown]]
    return "[" + ", ".join(words) + (f", ... {len(names) - shown} more" if len(names) > shown else "") + "]"


def _refuse_first(bad, label: str, column: str, problem: Callable[[int], str]) -> None:
    """If any row is ``bad``, stop with one line naming the first: its CSV line, column and ``problem(row)``."""
    rows = np.flatnonzero(np.asarray(bad))
    if len(rows):
        raise InputError(label, problem(int(rows[0])), line=int(rows[0]) + 2, column=column)


def _refuse_repeats(values: pd.Series, label: str, column: str) -> None:
    """A key column names each row once: stop at the first repeat, naming the line it first appeared on."""

    def problem(row: int) -> str:
        first = int(np.flatnonzero(values.to_numpy() == values.iloc[row])[0])
        return f"{column} {values.iloc[row]} repeats line {first + 2}"

    _refuse_first(values.duplicated(), label, column, problem)


def _shown(value) -> str:
    if pd.isna(value):
        return "an empty value"
    return repr(value) if len(value) <= 40 else f"{value[:40]!r}..."


def _numeric(frame: pd.DataFrame, label: str, column: str, *, integer: bool = False) -> np.ndarray:
    text = frame[column]
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() & text.notna()
    if integer:
        bad |= text.isna() | (values.notna() & (values != values.round()))
    _refuse_first(bad, label, column, lambda row: f"{_shown(text.iloc[row])} is not a number")
    return values.to_numpy(dtype=np.float64)


def _pixel_problem(text: str) -> str | None:
    """What is wrong with one row's pixel string, in words; None if it is a valid face."""
    tokens = [token for token in text.split(" ") if token]
    bad = next((token for token in tokens if not (token.isascii() and token.isdigit())), None)
    if bad is not None:
        return f"pixel {bad!r} is not a whole number 0..255"
    if len(tokens) != PIXELS:
        return f"{len(tokens)} pixels, expected {PIXELS} (96x96)"
    long = next((token for token in tokens if len(token) > 3), None)
    if long is not None:
        return f"pixel {long!r} has more than 3 digits: outside 0..255"
    big = next((int(token) for token in tokens if int(token) > 255), None)
    if big is not None:
        return f"pixel {big} is outside 0..255"
    return None


def _parse_row(text: str, label: str, row: int, column: str) -> np.ndarray:
    problem = _pixel_problem(text)
    if problem is not None:
        raise InputError(label, problem, line=row + 2, column=column)
    return np.array(text.split(), dtype=np.uint8)


def _parse_clean_chunk(chunk: np.ndarray) -> np.ndarray | None:
    """Grey levels (rows, PIXELS) of rows that are PIXELS numbers 0..255 of 1-3 digits, one space
    apart; None if any row is not like that (the caller then finds and names the problem).

    The rows are joined into one byte buffer, newline-separated, after 4 pad newlines. Every
    token ends at a separator, so the separators' positions give each token's length and, by
    gathers at offsets 1, 2 and 3 before them, its units, tens and hundreds.
    """
    buf = np.frombuffer(("\n\n\n\n" + "\n".join(chunk) + "\n").encode(), np.uint8)
    if buf.max() > ord("9"):
        return None
    at = np.flatnonzero(buf[3:] < ord("0"))  # separators as offsets from buf[3], the last pad byte
    if len(at) != len(chunk) * PIXELS + 1:
        return None
    step = np.diff(at)  # token length + 1
    if step.min() < 2 or step.max() > 4:
        return None
    at = at[1:]
    separators = buf[3:][at]
    if (separators[PIXELS - 1 :: PIXELS] != ord("\n")).any() or np.count_nonzero(separators == ord(" ")) != len(
        at
    ) - len(chunk):
        return None  # a separator other than a space, or a row of another length
    units, tens, hundreds = buf[2:][at], buf[1:][at], buf[at]
    has_tens = tens >= ord("0")
    values = (units - ord("0")).astype(np.uint16)
    values += (tens - ord("0")) * np.uint16(10) * has_tens
    values += (hundreds - ord("0")) * np.uint16(100) * (has_tens & (hundreds >= ord("0")))
    if values.max() > 255:
        return None
    return values.reshape(len(chunk), PIXELS)


def parse_pixels(strings: np.ndarray, label: str, column: str = "Image") -> np.ndarray:
    """Space-separated grey levels -> (N, 96, 96) uint8, vectorised over the bytes of many rows.

    Chunks of plain rows take the vectorised path; the rows of a chunk that it refuses are
    read one by one, which allows extra spaces and says what is wrong and where.
    """
    _refuse_first(pd.isna(strings), label, column, lambda row: "pixels missing")
    images = np.empty((len(strings), PIXELS), np.uint8)
    for start in range(0, len(strings), _CHUNK_ROWS):
        chunk = strings[start : start + _CHUNK_ROWS]
        values = _parse_clean_chunk(chunk)
        if values is None:
            values = [_parse_row(text, label, start + row, column) for row, text in enumerate(chunk)]
        images[start : start + len(chunk)] = values
    return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def _cached(path: Path, kind: str, parse) -> dict[str, np.ndarray]:
    """Arrays ``parse(content)`` makes of ``path``'s bytes, from the cache when their hash was seen before."""
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:20]
    cached = cache_dir() / f"{kind}-v{_CACHE_FORMAT}-{digest}.npz"
    if cached.exists():
        with np.load(cached) as arrays:
            return dict(arrays)
    arrays = parse(content)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays


def load_training(data_dir: Path) -> TrainingSet:
    path = _source(data_dir, TRAINING)

    def parse(content: bytes) -> dict[str, np.ndarray]:
        frame, label = _read_csv(path, TRAINING, content)
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
        return {"images": images, "keypoints": keypoints, "fingerprint": np.array(_fingerprint(images, keypoints))}

    arrays = _cached(path, TRAINING, parse)
    training = TrainingSet(arrays["images"], arrays["keypoints"], str(arrays["fingerprint"]))
    fixes = corrections_path(data_dir)
    if not fixes.is_file():
        return training
    corrections = read_corrections(fixes, len(training))
    keypoints = apply_corrections(training.keypoints, corrections)
    return TrainingSet(
        training.images,
        keypoints,
        _fingerprint(training.images, keypoints),
        training.keypoints,
        training.fingerprint,
        len(corrections),
    )


def _fingerprint(images: np.ndarray, keypoints: np.ndarray) -> str:
    """The hash of both arrays' bytes (images, then keypoints), without copying them."""
    digest = hashlib.sha256(images)
    digest.update(np.ascontiguousarray(keypoints, np.float32))
    return digest.hexdigest()[:16]


def load_test(data_dir: Path) -> TestSet:
    path = _source(data_dir, TEST)

    def parse(content: bytes) -> dict[str, np.ndarray]:
        frame, label = _read_csv(path, TEST, content)
        _require_columns(frame, label, ["ImageId", "Image"])
        image_ids = _numeric(frame, label, "ImageId", integer=True).astype(np.int64)
        _refuse_repeats(pd.Series(image_ids), label, "ImageId")
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
    _refuse_repeats(lookup["RowId"], label, "RowId")
    _refuse_first(
        ~lookup["ImageId"].isin(test.image_ids),
        label,
        "ImageId",
        lambda row: f"ImageId {lookup['ImageId'].iloc[row]} is not in the test set",
    )
    _refuse_first(
        ~lookup["FeatureName"].isin(COORDINATES),
        label,
        "FeatureName",
        lambda row: (
            f"FeatureName {_shown(lookup['FeatureName'].iloc[row])} is not one of the "
            f"{len(KEYPOINTS)} keypoints' coordinates"
        ),
    )
    return lookup


def repeated_rows(training: TrainingSet) -> int:
    """Training rows identical to an earlier one (pixels and keypoints): legal, but worth knowing."""
    rows = np.concatenate(
        [training.images.reshape(len(training), -1).view(np.uint8), training.keypoints.view(np.uint8)], axis=1
    )
    return len(rows) - len(np.unique(rows, axis=0))


def lookup_styles(lookup: pd.DataFrame) -> pd.Series:
    """Each test face's annotation style, read from the coordinates IdLookupTable asks of it, by ImageId."""
    asked = pd.crosstab(lookup["ImageId"], lookup["FeatureName"]).reindex(columns=list(COORDINATES), fill_value=0)
    return pd.Series(style_of(asked.to_numpy() > 0), index=asked.index, name="style")


def write_sample(data_dir: Path, out: Path, training_faces: int, test_faces: int, seed: int) -> None:
    """A small real copy of a competition folder: random training rows, the first test faces,
    and the IdLookupTable / SampleSubmission rows that ask about them, written as Kaggle ships them."""
    training, _ = _read_csv(_source(data_dir, TRAINING), TRAINING)
    test, _ = _read_csv(_source(data_dir, TEST), TEST)
    lookup, _ = _read_csv(_source(data_dir, LOOKUP), LOOKUP)
    for option, count, available in (("--train", training_faces, len(training)), ("--test", test_faces, len(test))):
        if not 1 <= count <= available:
            raise InputError(option, f"must be within 1..{available} (the faces there are), got {count}")
    if not 0 <= seed < 2**32:
        raise InputError("--seed", f"must be within 0..{2**32 - 1}, got {seed}")
    rows = np.sort(np.random.default_rng(seed).choice(len(training), training_faces, replace=False))
    test = test.iloc[:test_faces]
    lookup = lookup[lookup["ImageId"].isin(test["ImageId"])]
    out.mkdir(parents=True, exist_ok=True)
    for stem, frame in ((TRAINING, training.iloc[rows]), (TEST, test)):
        with atomic_path(out / f"{stem}.zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{stem}.csv", frame.to_csv(index=False))
    write_csv(lookup, out / f"{LOOKUP}.csv")
    write_csv(pd.DataFrame({"RowId": lookup["RowId"], "Location": 0}), out / "SampleSubmission.csv")
