"""`fkp predict` and `fkp export` on damaged input: photos whose header lies, odd image kinds, a fold model cut
short, an --out the export cannot write. One line naming the path, exit status 2, nothing written touched."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fkp
from PIL import Image

from competition.predict import MAX_SIDE, Photo, PhotoFaces, read_photo
from competition.schema import COORDINATES


def one_line(result, *fragments: str) -> str:
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fkp: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def png_claiming(width: int, height: int, depth: int = 8) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels, with a few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


@pytest.fixture
def runs(tiny_run, tmp_path) -> Path:
    """A writable copy of the tiny run's folder."""
    return Path(shutil.copytree(tiny_run, tmp_path / "runs"))


def predict(runs: Path, *photos, out: Path, extra=()):
    return fkp("predict", *photos, "--run", "good", "--runs-dir", runs, "--out", out, *extra)


@pytest.mark.parametrize("width,height", [(60000, 60000), (20000, 9000)])
def test_a_photo_whose_header_claims_too_many_pixels_is_one_line(runs, tmp_path, width, height):
    photo = tmp_path / "liar.png"
    photo.write_bytes(png_claiming(width, height))
    one_line(predict(runs, photo, out=tmp_path / "out"), str(photo), "megapixels")


def odd_image(kind: str) -> tuple[str, bytes]:
    """A small image of an odd kind, as a file name and its bytes."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    if kind == "16-bit":
        Image.fromarray(rng.integers(0, 65535, (40, 30), dtype=np.uint16)).save(buffer, "PNG")
    elif kind == "cmyk":
        Image.fromarray(rng.integers(0, 255, (30, 40, 4), dtype=np.uint8), "CMYK").save(buffer, "JPEG")
    elif kind == "alpha":
        Image.fromarray(rng.integers(0, 255, (30, 40, 4), dtype=np.uint8), "RGBA").save(buffer, "PNG")
    elif kind == "one pixel":
        Image.new("L", (1, 1), 7).save(buffer, "PNG")
    elif kind == "png named .jpg":
        Image.new("RGB", (20, 20), (1, 2, 3)).save(buffer, "PNG")
        return "photo.jpg", buffer.getvalue()
    return f"photo.{'jpg' if kind == 'cmyk' else 'png'}", buffer.getvalue()


@pytest.mark.parametrize("kind", ["16-bit", "cmyk", "alpha", "one pixel", "png named .jpg"])
def test_odd_but_readable_photos_are_read(runs, tmp_path, kind):
    name, content = odd_image(kind)
    (tmp_path / name).write_bytes(content)
    result = predict(runs, tmp_path / name, out=tmp_path / "out")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert table["photo"].tolist() == [str(tmp_path / name)] and table["face"].tolist() == [0]


def test_a_16_bit_photo_keeps_its_grey_levels(tmp_path):
    levels = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert read_photo(tmp_path / "deep.png").rgb[..., 0].tolist() == [[0, 100], [200, 255]]


def test_a_50_megapixel_photo_is_downscaled_as_it_is_decoded(tmp_path):
    """A 8,660 x 5,774 JPEG is read at most MAX_SIDE wide, in far less memory than its 150 MB of RGB pixels."""
    big = tmp_path / "big.jpg"
    gradient = np.linspace(0, 255, 8660, dtype=np.uint8)[None, :].repeat(5774, axis=0)
    Image.fromarray(gradient).save(big, quality=60)
    del gradient
    probe = (
        "import json, resource; from pathlib import Path; from competition.predict import read_photo\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"photo = read_photo(Path({str(big)!r}))\n"
        "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024\n"
        "print(json.dumps([photo.rgb.shape, photo.size, grown]))\n"
    )
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    shape, size, grown = json.loads(answer.stdout)
    assert shape == [round(5774 * MAX_SIDE / 8660), MAX_SIDE, 3] and size == [8660, 5774]
    assert grown < 60, f"reading grew the process by {grown} MB (its RGB pixels are 150 MB)"


def test_keypoints_found_on_a_downscaled_photo_are_given_in_the_photos_pixels():
    """Pixel centres map between the photo and its downscaled copy: the copy's pixel i covers the photo's
    [i / s, (i + 1) / s)."""
    photo = Photo(np.zeros((400, 600, 3), np.uint8), (2400, 1600), (0.25, 0.25))
    keypoints = np.tile([1.0, 1.0], len(COORDINATES) // 2)[None]  # the copy's top-left pixel centre (label pixels)
    found = photo.in_photo(PhotoFaces(np.array([[10.0, 20.0, 30.0, 40.0]]), keypoints, np.zeros((1, 96, 96))))
    np.testing.assert_allclose(found.boxes, [[40, 80, 120, 160]])
    np.testing.assert_allclose(found.keypoints[0, :2], [2.5, 2.5])  # the centre of the photo's first 4x4 block


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_fold_model_cut_short_is_one_line_naming_it(runs, tmp_path, command):
    model = runs / "good" / "full" / "fold1" / "model.keras"
    cut_short(model)
    (tmp_path / "face.png").write_bytes(odd_image("one pixel")[1])
    if command == "predict":
        result = predict(runs, tmp_path / "face.png", out=tmp_path / "out")
        assert not (tmp_path / "out").exists()
    else:
        result = fkp("export", "--run", "good", "--runs-dir", runs, "--out", tmp_path / "model.keras")
        assert not (tmp_path / "model.keras").exists()
    one_line(result, str(model), "rerun `fkp cv`")


def test_a_fold_model_of_another_specialist_is_one_line_naming_it(runs, tmp_path):
    full = runs / "good" / "full" / "fold0" / "model.keras"
    shutil.copy(runs / "good" / "partial" / "fold0" / "model.keras", full)
    one_line(fkp("export", "--run", "good", "--runs-dir", runs, "--out", tmp_path / "m.keras"), str(full), "30")


@pytest.mark.parametrize(
    "format,out,fragment",
    [
        ("keras", "{folder}", "is a folder"),
        ("keras", "{file}", "ends .keras"),
        ("keras", "model.h5", "ends .keras"),
        ("onnx", "model.keras", "ends .onnx"),
        ("keras", "{file}/model.keras", "is a file"),
        ("saved_model", "{file}", "is a file"),
        ("saved_model", "{folder}", "holds no SavedModel"),
    ],
)
def test_an_out_the_export_cannot_write_is_one_line_and_touches_nothing(runs, tmp_path, format, out, fragment):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "mine.txt").write_text("the user's\n")
    (tmp_path / "file").write_text("the user's\n")
    target = out.format(folder=tmp_path / "folder", file=tmp_path / "file")
    target = target if "/" in target else str(tmp_path / target)
    result = fkp("export", "--run", "good", "--runs-dir", runs, "--format", format, "--out", target)
    one_line(result, fragment)
    assert (tmp_path / "folder" / "mine.txt").read_text() == (tmp_path / "file").read_text() == "the user's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "runs"]


def test_predict_into_an_out_that_is_a_file_is_one_line(runs, tmp_path):
    (tmp_path / "out").write_text("the user's\n")
    (tmp_path / "face.png").write_bytes(odd_image("one pixel")[1])
    one_line(predict(runs, tmp_path / "face.png", out=tmp_path / "out"), str(tmp_path / "out"), "is a file")
    assert (tmp_path / "out").read_text() == "the user's\n"


def test_export_of_the_tiny_run_writes_the_model(runs, tmp_path):
    result = fkp("export", "--run", "good", "--runs-dir", runs, "--out", tmp_path / "m.keras", "--no-tta")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.keras").stat().st_size > 1000


@pytest.mark.slow
def test_predict_and_export_print_only_their_own_lines(runs, tmp_path):
    """TensorFlow's start-up lines (absl, oneDNN, printed twice by `fkp predict`) stay out of the terminal, as in
    `fkp cv`; `fkp --verbose` shows them. Both commands in one process of their own, as the entry point runs them."""
    (tmp_path / "face.png").write_bytes(odd_image("one pixel")[1])
    script = (
        "import sys\nfrom competition.cli import app\n"
        "for arguments in sys.argv[1:]:\n"
        "    app(arguments.split('|'), prog_name='fkp', standalone_mode=False)\n"
    )
    commands = [
        f"predict|{tmp_path / 'face.png'}|--run|good|--runs-dir|{runs}|--out|{tmp_path / 'out'}",
        f"export|--run|good|--runs-dir|{runs}|--out|{tmp_path / 'm.keras'}|--no-tta",
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "ABSL", "GRPC"))}
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", script, *commands], capture_output=True, text=True, env=environment, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert "face.png: no face found" in done.stdout and "m.keras: run good as one keras model" in done.stdout
