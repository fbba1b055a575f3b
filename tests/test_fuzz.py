"""Property-based fuzzing of every command with damaged competition folders, runs, configs and options.

The property: a command either succeeds or exits with status 2 and ONE line on stderr (``fkp: ...``)
naming the file, key or option and what is wrong; never a traceback; and no file that existed
before is changed by a refused command, nor is a temporary file left behind.

Profiles (tests/conftest.py): ``fast`` in CI; ``FKP_FUZZ=long python -m pytest tests/test_fuzz.py``
runs many more examples of each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import typing
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fkp, small_competition_folder
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_runs import write_run

from competition import data
from competition.config import SpecialistConfig
from competition.folds import make_folds
from competition.models import family_config

FILES = ("training.csv", "test.csv", "IdLookupTable.csv")
pytestmark = pytest.mark.slow  # the fast profile's examples take about two minutes in all


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def assert_clean(result, before: dict[str, bytes], after: dict[str, bytes], *, may_write=()):
    """Success, or status 2 with one ``fkp:`` line; files that existed are unchanged unless the command
    succeeded and may write them; no temporary file is left."""
    assert "Traceback" not in result.output, result.output
    if result.exit_code != 0:
        assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fkp: "), result.stderr
        assert len(lines[0]) < 600, lines[0]
        may_write = ()
    for name, content in before.items():
        if not name.startswith(tuple(may_write)):
            assert after.get(name) == content, f"{name} changed or vanished"
    assert not [name for name in after if ".tmp" in name], after.keys()
    return result


@contextlib.contextmanager
def workspace(base: Path | None = None):
    """A fresh folder (a copy of ``base``) with its own parsed-array cache."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder) / "work"
        shutil.copytree(base, work) if base else work.mkdir()
        cache = os.environ.get("FKP_CACHE_DIR")
        os.environ["FKP_CACHE_DIR"] = str(Path(folder) / "cache")
        try:
            yield work
        finally:
            os.environ["FKP_CACHE_DIR"] = cache


@pytest.fixture(scope="module")
def small(tmp_path_factory, sample_dir) -> Path:
    """A small extracted copy of the sample: 12 training faces, 3 test faces and their lookup rows."""
    return small_competition_folder(sample_dir, tmp_path_factory.mktemp("fuzz") / "data", 12, 3)


# --- damaged bytes and tables --------------------------------------------------------------------


def _lines(content: bytes) -> list[bytes]:
    return content.split(b"\n")


def _columns(content: bytes, change) -> bytes:
    """Every line's comma-separated fields rearranged by ``change(fields)``."""
    return b"\n".join(b",".join(change(line.split(b","))) if line else line for line in _lines(content))


@st.composite
def damaged(draw, content: bytes) -> bytes:
    """``content`` damaged one way: bytes overwritten or inserted, truncated, re-encoded, columns or rows
    duplicated, shuffled or dropped."""
    size = len(content)
    at = draw(st.integers(0, max(size - 1, 0)))
    kind = draw(
        st.sampled_from(
            [
                "overwrite",
                "insert",
                "truncate",
                "encoding",
                "bom",
                "duplicate column",
                "shuffle columns",
                "drop column",
                "duplicate row",
                "shuffle rows",
                "drop row",
                "empty line",
                "crlf",
                "nul",
            ]
        )
    )
    if kind == "overwrite":
        return content[:at] + draw(st.binary(min_size=1, max_size=16)) + content[at + 16 :]
    if kind == "insert":
        return content[:at] + draw(st.binary(min_size=1, max_size=16)) + content[at:]
    if kind == "truncate":
        return content[:at]
    if kind == "encoding":
        return content.decode().encode(draw(st.sampled_from(["utf-16", "utf-32", "cp500"])))
    if kind == "bom":
        return b"\xef\xbb\xbf" + content
    if kind == "nul":
        return content[:at] + b"\x00" + content[at:]
    if kind == "crlf":
        return content.replace(b"\n", b"\r\n")
    width = len(_lines(content)[0].split(b","))
    if kind == "duplicate column":
        column = draw(st.integers(0, width - 1))
        return _columns(content, lambda fields: fields + fields[column : column + 1])
    if kind == "shuffle columns":
        order = draw(st.permutations(range(width)))
        return _columns(content, lambda fields: [fields[i] for i in order if i < len(fields)])
    if kind == "drop column":
        column = draw(st.integers(0, width - 1))
        return _columns(content, lambda fields: fields[:column] + fields[column + 1 :])
    header, *rows = [line for line in _lines(content) if line]
    if kind == "duplicate row":
        row = draw(st.integers(0, len(rows) - 1))
        rows.insert(draw(st.integers(0, len(rows))), rows[row])
    elif kind == "shuffle rows":
        rows = draw(st.permutations(rows))
    elif kind == "drop row":
        del rows[draw(st.integers(0, len(rows) - 1))]
    elif kind == "empty line":
        rows.insert(draw(st.integers(0, len(rows))), b"")
    return b"\n".join([header, *rows]) + b"\n"


@st.composite
def damaged_folder(draw, folder: Path) -> dict[str, bytes]:
    """New contents for one or two of a data folder's files (a file may also turn into a zip of itself)."""
    names = draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=2, unique=True))
    return {name: draw(damaged((folder / name).read_bytes())) for name in names}


def write_damage(folder: Path, changes: dict[str, bytes], zipped: bool) -> None:
    for name, content in changes.items():
        path = folder / name
        if zipped and name != "IdLookupTable.csv":
            path.unlink()
            with zipfile.ZipFile(path.with_suffix(".zip"), "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(name, content)
        else:
            path.write_bytes(content)


@given(changes=st.data(), zipped=st.booleans())
def test_check_on_damaged_folders(small, changes, zipped):
    with workspace(small) as work:
        write_damage(work, changes.draw(damaged_folder(small)), zipped)
        before = snapshot(work)
        assert_clean(fkp("check", "--data", work), before, snapshot(work))


# --- configs: every numeric key set to 0, a negative number, NaN, a huge value or the wrong type ----


def _numeric_keys(target, prefix: str = "") -> list[str]:
    """Every int, float or list-of-int key below a config dataclass, dotted."""
    keys = []
    for name, kind in typing.get_type_hints(type(target)).items():
        value = getattr(target, name)
        if dataclasses.is_dataclass(value):
            keys += _numeric_keys(value, f"{prefix}{name}.")
        elif kind in (int, float, list[int]):
            keys.append(f"{prefix}{name}")
    return keys


SHARED_KEYS = _numeric_keys(SpecialistConfig(model=family_config("regression")))
CONFIG_KEYS = sorted(
    {"seed", *SHARED_KEYS, *(f"specialists.{name}.{key}" for name in ("full", "partial") for key in SHARED_KEYS)}
)
NEVER_VALID = ["nan", "inf", "-inf", "1e300", str(10**30), "'abc'", "true", "[]", "{a = 1}"]  # TOML
EDGES = ["0", "-1", "-0.5", "0.5", "1", "2", "96", "[0]", "[1, 1, 1, 1, 1, 1, 1, 1]", "[-3]"]


def _names_the_key(result, key: str) -> bool:
    """The message names the key (as set, or as resolved for one specialist: 'specialists.full.<key>')."""
    return f"{key}'" in result.stderr


@given(
    key=st.sampled_from(CONFIG_KEYS), value=st.sampled_from(NEVER_VALID + EDGES), how=st.sampled_from(["set", "file"])
)
def test_cv_with_a_config_key_set_to_anything(small, key, value, how):
    """The config is judged before any data is read: a value outside its key's range stops `fkp cv`
    with one line naming the key; one inside goes on to the data (here a missing folder)."""
    with workspace() as work:
        options = ["--set", f"{key}={value}"]
        if how == "file":
            (work / "mine.toml").write_text("\n".join(_toml_lines(key, value)) + "\n")
            options = ["--config", work / "mine.toml"]
        before = snapshot(work)
        result = assert_clean(
            fkp("cv", "--data", work / "missing", "--runs-dir", work / "runs", "--folds-dir", work / "folds", *options),
            before,
            snapshot(work),
        )
        assert result.exit_code == 2
        if value in NEVER_VALID:
            assert _names_the_key(result, key), result.stderr
        else:
            assert _names_the_key(result, key) or "data folder not found" in result.stderr, result.stderr


def _toml_lines(key: str, value: str) -> list[str]:
    table, _, name = key.rpartition(".")
    return [f"[{table}]" if table else "", f"{name} = {value}"]


def test_the_config_keys_cover_every_table():
    assert {"seed", "train.epochs", "augment.rotate", "model.filters", "specialists.full.train.max_minutes"} <= set(
        CONFIG_KEYS
    )


# --- options: every number a command takes ---------------------------------------------------------

OPTION_VALUES = ["0", "-1", "1", "2", "3", "nan", str(10**30), "abc", "1.5", "", str(2**32)]


@given(
    option=st.sampled_from(["--folds", "--limit", "--fold", "--epochs", "--seed"]),
    value=st.sampled_from(OPTION_VALUES),
    other=st.sampled_from(["--folds", "--limit", "--fold", "--seed"]),
    other_value=st.sampled_from(["2", "3", "5", "12", "100"]),
)
def test_cv_options_set_to_anything(small, option, value, other, other_value):
    """Everything `fkp cv` checks before it trains; training is then refused by a run made on other
    data, so no example trains."""
    with workspace() as work:
        run = work / "runs" / "fuzz"
        run.mkdir(parents=True)
        (run / "run.json").write_text(
            '{"fingerprint": "other", "folds": 2, "fold_seed": 42, "limit": null, "config": {"name": "smoke"}}'
        )
        before = snapshot(work)
        arguments = {other: other_value, option: value}
        result = fkp(
            "cv",
            "--data",
            small,
            "--config",
            "smoke",
            "--run",
            "fuzz",
            "--runs-dir",
            work / "runs",
            "--folds-dir",
            work / "folds",
            *(item for pair in arguments.items() for item in pair),
        )
        assert_clean(result, before, snapshot(work))
        assert result.exit_code == 2
        named = [name for name in arguments if name in result.stderr]
        assert named or "run.json" in result.stderr or "--limit" in result.stderr, result.stderr


@given(
    values=st.fixed_dictionaries({"--folds": st.sampled_from(OPTION_VALUES), "--seed": st.sampled_from(OPTION_VALUES)})
)
def test_folds_options_set_to_anything(small, values):
    with workspace() as work:
        before = snapshot(work)
        result = fkp(
            "folds", "--data", small, "--folds-dir", work / "folds", *(item for pair in values.items() for item in pair)
        )
        assert_clean(result, before, snapshot(work))


@given(
    values=st.fixed_dictionaries(
        {
            "--train": st.sampled_from(OPTION_VALUES + ["12", "13"]),
            "--test": st.sampled_from(OPTION_VALUES),
            "--seed": st.sampled_from(OPTION_VALUES),
        }
    )
)
def test_sample_options_set_to_anything(small, values):
    with workspace() as work:
        before = snapshot(work)
        result = fkp(
            "sample", "--data", small, "--out", work / "out", *(item for pair in values.items() for item in pair)
        )
        assert_clean(result, before, snapshot(work))


@pytest.mark.parametrize(
    "command",
    [
        ["cv", "--runs-dir", "{file}", "--folds-dir", "{folder}"],
        ["cv", "--folds-dir", "{file}"],
        ["folds", "--folds-dir", "{file}/below"],
        ["blend", "--out", "{file}/submission.csv"],
        ["blend", "--out", "{folder}"],
        ["blend", "--runs-dir", "{file}"],
        ["show", "--runs-dir", "{file}"],
        ["sample", "--out", "{file}"],
        ["check", "--data", "{file}"],
    ],
)
def test_output_paths_that_are_not_folders(small, tmp_path, command):
    (tmp_path / "file").write_text("not a folder\n")
    (tmp_path / "folder").mkdir()
    arguments = [part.format(file=tmp_path / "file", folder=tmp_path / "folder") for part in command]
    before = snapshot(tmp_path)
    result = fkp(*arguments, "--data", small) if arguments[0] != "check" else fkp(*arguments)
    assert_clean(result, before, snapshot(tmp_path))
    assert result.exit_code == 2


# --- fkp tune: options, config keys and search spaces, up to the search it would start -----------------


@pytest.fixture(scope="module")
def held_project(tmp_path_factory, small):
    """A workspace whose tune project both specialists' live searches hold (a claim naming a live process of
    this host), so every example that passes fkp tune's checks is refused there, before any trial trains;
    and a small search space."""
    from conftest import write_claim

    from competition.tune import project_dir

    folder = tmp_path_factory.mktemp("fuzz-tune") / "work"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    for name in ("full", "partial"):
        write_claim(project_dir(folder / "runs", "p", name).with_name(f"{name}.claim.0"), holder.pid)
    (folder / "space.toml").write_text("[search.train]\nlearning_rate = { values = [1e-3, 2e-3] }\n")
    yield folder
    holder.kill()
    holder.wait()


SPACE_DAMAGE = [
    "",
    "[search.train]\n",
    "[search]\nx = 1\n",
    "[search.train]\nepochs = { min = 5 }\n",
    "[search.train]\nlearning_rate = { values = [] }\n",
    "[search.model]\nnope = { values = [1] }\n",
    "[search.train]\nbatch_size = { values = ['a'] }\n",
    "[search.model]\nfamily = { values = ['x'] }\n",
    "\x00\xff",
    "[search.train",
    "[other]\na = 1\n",
]


@settings(max_examples=max(5, settings().max_examples // 2))  # each reads the data and may build folds
@given(
    option=st.sampled_from(
        ["--max-trials", "--epochs", "--fold", "--folds", "--limit", "--seed", "--tuner", "--specialist", "--worker"]
    ),
    value=st.sampled_from(OPTION_VALUES + ["random", "hyperband", "full", "partial"]),
    key=st.sampled_from(CONFIG_KEYS),
    key_value=st.sampled_from(NEVER_VALID + EDGES),
    space=st.sampled_from([None, *SPACE_DAMAGE]),
)
def test_tune_with_options_keys_and_spaces_set_to_anything(small, held_project, option, value, key, key_value, space):
    """`fkp tune` refuses every bad option, config value and search space in one line naming it, and
    changes nothing; what passes every check meets the live search holding the project."""
    with workspace(held_project) as work:
        if space is not None:
            (work / "space.toml").write_bytes(space.encode("latin-1"))
        before = snapshot(work)
        arguments = {
            "--specialist": "partial",
            "--tuner": "random",
            "--max-trials": "1",
            "--epochs": "1",
            option: value,
        }
        result = fkp(
            "tune",
            "--data",
            small,
            "--config",
            "smoke",
            "--space",
            work / "space.toml",
            "--project",
            "p",
            "--runs-dir",
            work / "runs",
            "--folds-dir",
            work / "folds",
            "--out",
            work / "tuned.toml",
            "--set",
            f"{key}={key_value}",
            *(item for pair in arguments.items() for item in pair),
        )
        assert_clean(result, before, snapshot(work))
        assert result.exit_code == 2, result.output
        assert not (work / "tuned.toml").exists()


# --- runs: damaged run folders against blend and show ---------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_dir) -> Path:
    training, test = data.load_training(sample_dir), data.load_test(sample_dir)
    folder = tmp_path_factory.mktemp("fuzz-runs") / "work"
    write_run(
        folder / "runs" / "good", training, test, make_folds(training, 2, seed=42), noise=1.0, tta_noise=0.8, seed=1
    )
    (folder / "subs").mkdir()
    (folder / "subs" / "submission.csv").write_text("RowId,Location\n1,42\n")
    return folder


RUN_FILES = [
    "run.json",
    "full/fold0/oof.csv",
    "full/fold1/test_tta.csv",
    "partial/fold0/oof_tta.csv",
    "partial/fold1/test.csv",
    "full/fold0/history.csv",
    "full/fold1/fold.json",
]


@st.composite
def damaged_run(draw, run: Path) -> dict[str, bytes | None]:
    """New contents (None: deleted) for one or two of a run's files."""
    names = draw(st.lists(st.sampled_from(RUN_FILES), min_size=1, max_size=2, unique=True))
    return {name: draw(st.none() | damaged((run / name).read_bytes())) for name in names}


@contextlib.contextmanager
def damaged_workspace(runs: Path, changes):
    """A workspace copy of ``runs`` with its run "good" damaged as ``changes`` draws, and its files before
    the command."""
    with workspace(runs) as work:
        _damage_run(work / "runs" / "good", changes.draw(damaged_run(runs / "runs" / "good")))
        yield work, snapshot(work)


def _damage_run(run: Path, changes: dict[str, bytes | None]) -> None:
    for name, content in changes.items():
        (run / name).unlink() if content is None else (run / name).write_bytes(content)


@given(changes=st.data(), tta=st.sampled_from([[], ["--tta"], ["--no-tta"]]))
def test_blend_of_a_damaged_run(runs, sample_dir, changes, tta):
    with damaged_workspace(runs, changes) as (work, before):
        result = fkp(
            "blend",
            "--data",
            sample_dir,
            "--run",
            "good",
            "--runs-dir",
            work / "runs",
            "--out",
            work / "subs" / "submission.csv",
            *tta,
        )
        assert_clean(result, before, snapshot(work), may_write=["subs/"])


@settings(max_examples=max(5, settings().max_examples // 4))  # each draws three figures
@given(changes=st.data())
def test_show_of_a_damaged_run(runs, sample_dir, changes):
    with damaged_workspace(runs, changes) as (work, before):
        result = fkp("show", "--data", sample_dir, "--run", "good", "--runs-dir", work / "runs")
        assert_clean(result, before, snapshot(work), may_write=["runs/good/plots/", "runs/good/report.md"])


@settings(max_examples=max(5, settings().max_examples // 4))  # each copies a run
@given(changes=st.data())
def test_runs_lists_a_damaged_run(runs, sample_dir, changes):
    """`fkp runs` never fails on a damaged run: the run is a row, scored or saying why it cannot be read."""
    with damaged_workspace(runs, changes) as (work, before):
        result = fkp("runs", "--data", sample_dir, "--runs-dir", work / "runs")
        assert result.exit_code == 0, (result.output, result.exception)
        assert re.search(r"^│ good ", result.stdout, re.MULTILINE), result.stdout
        assert_clean(result, before, snapshot(work))


# --- fkp predict: damaged and odd photos; fkp export: damaged runs ---------------------------------


@pytest.fixture(scope="module")
def loaded_once(tiny_run):
    """``export.run_model`` answered from a cache in this process, so `fkp predict` examples on the same
    undamaged run build and trace its model once (the photos are what they vary)."""
    from competition import export

    built, original = {}, export.run_model

    def cached(run, tta, allow_partial=False):
        key = (str(run.path), tta, allow_partial)
        if key not in built:
            built[key] = original(run, tta, allow_partial)
        return built[key]

    export.run_model = cached
    yield tiny_run
    export.run_model = original


def _image_bytes(kind: str, width: int, height: int, seed: int) -> bytes:
    """A real image of ``kind`` (a Pillow mode and format), ``width`` x ``height``, random pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    mode, format = kind.split()
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    elif mode == "P":
        image = Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).convert("P")
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        image = Image.frombytes(mode, (width, height), rng.integers(0, 255, width * height * bands, np.uint8).tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


def _header_claiming(format: str, width: int, height: int) -> bytes:
    """A PNG or JPEG whose header claims ``width`` x ``height`` pixels, with a few bytes of data."""
    if format == "PNG":

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        data = chunk(b"IDAT", zlib.compress(b"\0" * 99))
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")
    small = _image_bytes("L JPEG", 8, 8, 0)
    at = small.index(b"\xff\xc0") + 5  # the frame header: precision, then height and width
    return small[:at] + struct.pack(">HH", height, width) + small[at + 4 :]


IMAGE_KINDS = ["L PNG", "RGB PNG", "RGBA PNG", "LA PNG", "P PNG", "I;16 PNG", "L JPEG", "RGB JPEG", "CMYK JPEG"]


@st.composite
def odd_photo(draw) -> tuple[str, bytes]:
    """A photo's file name and bytes: an image of an odd kind or size, or one damaged, cut short, empty, named
    with the wrong extension, or whose header claims a huge size."""
    kind = draw(st.sampled_from(IMAGE_KINDS))
    width, height = draw(st.integers(1, 120)), draw(st.integers(1, 120))
    content = _image_bytes(kind, width, height, draw(st.integers(0, 9)))
    how = draw(
        st.sampled_from(["as made", "damaged", "truncated", "empty", "huge header", "wrong extension", "not an image"])
    )
    extension = ".png" if kind.endswith("PNG") else ".jpg"
    if how == "damaged":
        at = draw(st.integers(0, len(content) - 1))
        content = content[:at] + draw(st.binary(min_size=1, max_size=16)) + content[at + draw(st.integers(0, 16)) :]
    elif how == "truncated":
        content = content[: draw(st.integers(0, len(content) - 1))]
    elif how == "empty":
        content = b""
    elif how == "huge header":
        side = st.integers(1, 65535)
        content = _header_claiming(kind.split()[1], draw(side), draw(side))
    elif how == "wrong extension":
        extension = draw(st.sampled_from([".jpg", ".png", ".txt", ".gif", ""]))
    elif how == "not an image":
        content = draw(st.sampled_from([b"GIF89a" + bytes(20), b"BM" + bytes(60), b"%PDF-1.4\n", b"\x00" * 9]))
    return f"photo{extension}", content


@given(photo=odd_photo(), detect=st.booleans(), tta=st.sampled_from([[], ["--no-tta"]]))
def test_predict_on_damaged_and_odd_photos(loaded_once, photo, detect, tta):
    """`fkp predict` reads every photo it can (keypoints in predictions.csv, a picture) and refuses any other in
    one line naming it, exit status 2; no traceback, nothing else written."""
    name, content = photo
    with workspace() as work:
        (work / name).write_bytes(content)
        (work / "out").mkdir()
        (work / "out" / "mine.txt").write_text("the user's\n")
        before = snapshot(work)
        result = fkp(
            "predict",
            work / name,
            "--run",
            "good",
            "--runs-dir",
            loaded_once,
            "--out",
            work / "out",
            *([] if detect else ["--no-detect"]),
            *tta,
        )
        assert_clean(result, before, snapshot(work), may_write=["out/predictions.csv", "out/photo.png"])
        if result.exit_code:
            assert str(work / name) in result.stderr, result.stderr
        else:
            table = pd.read_csv(work / "out" / "predictions.csv")
            assert table["photo"].tolist() == [str(work / name)] * len(table), table


EXPORT_FILES = [
    "full/fold0/model.keras",
    "partial/fold1/model.keras",
    "full/fold1/fold.json",
    "head.json",
    "run.json",
    "config.toml",
]


@st.composite
def damaged_export_run(draw, run: Path) -> dict[str, bytes | None]:
    """New contents (None: deleted) for one of the files `fkp export` reads of a run: a fold model cut short,
    overwritten or swapped for another fold's or specialist's, a damaged JSON record."""
    name = draw(st.sampled_from(EXPORT_FILES))
    content = (run / name).read_bytes()
    how = draw(st.sampled_from(["delete", "truncate", "overwrite", "swap", "json"]))
    if how == "delete":
        return {name: None}
    if how == "truncate":
        return {name: content[: draw(st.integers(0, len(content) - 1))]}
    if how == "overwrite":
        at = draw(st.integers(0, len(content) - 1))
        return {name: content[:at] + draw(st.binary(min_size=1, max_size=32)) + content[at + 32 :]}
    if how == "swap" and name.endswith("model.keras"):
        other = draw(st.sampled_from([n for n in ["full/fold1/model.keras", "partial/fold0/model.keras"] if n != name]))
        return {name: (run / other).read_bytes()}
    if name.endswith(".json"):  # a key's value replaced by something of another type
        record = json.loads(content)
        key = draw(st.sampled_from(sorted(record)))
        record[key] = draw(st.sampled_from([None, "x", -1, 1e309, [], {}, [[1, 2]], {"a": 1}]))
        return {name: json.dumps(record).encode()}
    return {name: draw(damaged(content))} if b"\0" not in content else {name: content[: len(content) // 2]}


@given(changes=st.data(), tta=st.booleans())
def test_export_of_a_damaged_run(exportable, changes, tta):
    """`fkp export` of a damaged run writes the model, or refuses in one line naming the file, exit status 2,
    with nothing written and no temporary file left. (What it reads of the run is the same for every format;
    tests/test_damaged_inputs.py checks each format's --out.)"""
    format = "keras"
    with workspace(exportable) as work:
        run = work / "runs" / "good"
        _damage_run(run, changes.draw(damaged_export_run(exportable / "runs" / "good")))
        before = snapshot(work)
        out = work / "out" / ("model.keras" if format == "keras" else "saved")
        result = fkp(
            "export",
            "--run",
            "good",
            "--runs-dir",
            work / "runs",
            "--format",
            format,
            "--out",
            out,
            "--tta" if tta else "--no-tta",
        )
        assert_clean(result, before, snapshot(work), may_write=["out/"])
        assert out.exists() == (result.exit_code == 0), result.output


@pytest.fixture(scope="module")
def exportable(tiny_run, tmp_path_factory) -> Path:
    """A workspace holding a copy of the tiny run's folder, with re-framing recorded in a fold's fold.json (so
    export reads it) and a fold's fold.json given one."""
    folder = tmp_path_factory.mktemp("fuzz-export") / "work"
    shutil.copytree(tiny_run, folder / "runs")
    report = folder / "runs" / "good" / "full" / "fold1" / "fold.json"
    record = json.loads(report.read_text())
    bounds = {"eyes": [0, 1], "eye_distance": [20.0, 50.0], "angle": [-0.2, 0.2], "midpoint_x": [40.0, 56.0]}
    record["reframe"] = {"bounds": {**bounds, "midpoint_y": [30.0, 45.0]}, "weight": 0.75}
    report.write_text(json.dumps(record))
    return folder


# --- fkp cv that trains: a handful of accepted edge settings -----------------------------------------

ACCEPTED_EDGES = [
    "augment.rotate=0",
    "augment.flip=1",
    "augment.scale=0",
    "model.dropout=0",
    "train.warmup_epochs=0",
    "train.schedule='cosine'",
    "train.batch_size=1",
    "train.batch_size=4096",
    "model.filters=[1]",
    "model.input_downsample=96",
    "model.kernel_size=25",
    "train.max_minutes=0.001",
    "seed=0",
    "model.convs_per_block=1",
    "model.dense_units=1",
    "train.patience=1",
]
# A kernel of 25 is wider than the smoke network's last feature map (24x24); the largest allowed, 96, took
# 4.5 minutes of one example on 2 cores.


@settings(max_examples=max(3, settings().max_examples // 40))  # each trains a fold in its own process
@given(first=st.sampled_from(ACCEPTED_EDGES), second=st.sampled_from(ACCEPTED_EDGES))
def test_cv_trains_or_refuses_with_edge_settings(sample_dir, first, second):
    """Through the entry point, as a user runs it (a fold's spawned process under CliRunner's captured
    streams does not finish)."""
    with workspace() as work:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "competition",
                "cv",
                "--data",
                sample_dir,
                "--config",
                "smoke",
                "--folds",
                "2",
                "--fold",
                "0",
                "--epochs",
                "1",
                "--limit",
                "40",
                "--set",
                "specialists.partial.enabled=false",
                "--set",
                first,
                "--set",
                second,
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert "Traceback" not in result.stderr, result.stderr
        if result.returncode:
            assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        else:
            assert result.stdout.strip().splitlines()[-1].startswith("cv_rmse="), result.stdout
            assert result.stderr == "", result.stderr  # the backend's start-up lines stay out of the terminal
        assert not [path for path in work.rglob("*") if ".tmp" in path.name]
