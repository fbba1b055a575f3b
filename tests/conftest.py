"""Shared fixtures: real data (the competition folder when present, else the bundled sample)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pytest-xdist's workers start with COLUMNS=80 and LINES=24 set, and rich would fix fkp's console at that width
# when `competition.cli` is imported; unset, the console asks at print time (a test's COLUMNS, or the terminal).
for name in ("COLUMNS", "LINES"):
    os.environ.pop(name, None)

from competition import data  # noqa: E402
from competition.cli import app  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fkp-data"


@pytest.fixture(scope="session", autouse=True)
def cache(tmp_path_factory):
    """One parsed-array cache for the whole session, away from the user's."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["FKP_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The competition download when it is beside the repo, else the bundled sample."""
    return SHARED if (SHARED / "training.zip").exists() else data.bundled_sample()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return data.bundled_sample()


@pytest.fixture(scope="session")
def training(sample_dir):
    return data.load_training(sample_dir)


def small_competition_folder(source: Path, folder: Path, training_faces: int, test_faces: int) -> Path:
    """Extracted CSVs of the first faces of the data folder ``source``, and the lookup and sample-submission rows
    that ask about them, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.read_csv(source / "training.zip", dtype=str).iloc[:training_faces].to_csv(folder / "training.csv", index=False)
    pd.read_csv(source / "test.zip", dtype=str).iloc[:test_faces].to_csv(folder / "test.csv", index=False)
    lookup = pd.read_csv(source / "IdLookupTable.csv")
    lookup = lookup[lookup.ImageId <= test_faces]
    lookup.to_csv(folder / "IdLookupTable.csv", index=False)
    submission = pd.read_csv(source / "SampleSubmission.csv")
    submission[submission.RowId.isin(lookup.RowId)].to_csv(folder / "SampleSubmission.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def run_data(tmp_path_factory, data_dir) -> Path:
    """What the end-to-end runs train and predict on: ``data_dir``'s first 600 training faces and first 80 test
    faces (the bundled sample's 300 and 60). `fkp cv` predicts every test face in every fold with TTA: on all
    1,783 test faces that took a fifth to a third of each run's time, and 80 are enough to check the answers."""
    return small_competition_folder(data_dir, tmp_path_factory.mktemp("run_data"), 600, 80)


@pytest.fixture
def sample_copy(tmp_path, sample_dir) -> Path:
    """A writable copy of the bundled sample, to damage."""
    target = tmp_path / "data"
    shutil.copytree(sample_dir, target)
    return target


# what `learned_run` sets on cpu-wide.toml, so a test can name the same run's config (tests/test_recipe.py)
LEARNED_SETTINGS = [
    "train.epochs=10",
    "specialists.partial.enabled=true",
    "inference.reframe=0.25",
    "inference.prefer_by_style=true",
    "inference.refine=linear",
    "train.validate_every=10",
]


@pytest.fixture(scope="session")
def learned_run(tmp_path_factory, run_data) -> Path:
    """A small run that has learned faces: `fkp cv --config cpu-wide` with both specialists, 2 folds, 10 epochs
    (validated on the last alone, as the CPU profile validates), on the 600 faces of ``run_data``, its TTA with
    re-framing (so `fkp export` builds it into the graph), each specialist chosen per annotation style and a
    second stage fitted on the out-of-fold errors (so `fkp export` and `fkp predict` read --data).
    Returns the folder `fkp` ran in; the run is runs/learned, and what `fkp cv` printed is cv.out."""
    work = tmp_path_factory.mktemp("learned")
    cv = subprocess.run(
        [
            sys.executable,
            "-m",
            "competition",
            "cv",
            "--data",
            str(run_data),
            "--config",
            "cpu-wide",
            "--folds",
            "2",
            *(part for setting in LEARNED_SETTINGS for part in ("--set", setting)),
            "--run",
            "learned",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert cv.returncode == 0, cv.stdout + cv.stderr
    (work / "cv.out").write_text(cv.stdout)
    return work


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, sample_dir) -> Path:
    """A runs folder holding run "good": both specialists on 2 folds of the bundled sample, each fold's model a
    real but tiny network (tests/synthetic_runs.py), so `fkp predict` and `fkp export` load and build it in a
    second. Copy it before damaging it."""
    from synthetic_runs import write_run

    from competition.folds import make_folds

    training, test = data.load_training(sample_dir), data.load_test(sample_dir)
    folder = tmp_path_factory.mktemp("tiny-run") / "runs"
    folds = make_folds(training, 2, seed=42)
    write_run(folder / "good", training, test, folds, noise=1.0, tta_noise=0.8, seed=1)
    return folder


def fkp(*args):
    """`fkp ARGS` in this process, as typer's runner invokes it: no process to start, and none of the Keras
    import (about 8 s on 2 cores) a process of its own would pay where the test's process has Keras loaded."""
    return CliRunner().invoke(app, [str(arg) for arg in args])


def free_local_address() -> str:
    """HOST:PORT of a free local port, for a tuning chief's oracle or a Ray head."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def write_claim(path: Path, pid: int, host: str | None = None) -> None:
    """A claim file (``competition.claims``) naming a process of ``host`` (default: this host)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"host": host or socket.gethostname(), "pid": pid, "started": time.time(), "token": "theirs"})
    )


@pytest.fixture
def dead_pid() -> int:
    """The id of a process of this host that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid():
    """The id of a process of this host that is alive for the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


# Parallel runs (`-n 2`, pytest-xdist's loadgroup): the tests that share an expensive fixture go to one worker, so
# it is built once (the Ray tests mark their own group in tests/test_cluster.py).
SHARED_FIXTURES = ("learned_run", "smoke_run", "tuned_work")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        shared = next((name for name in SHARED_FIXTURES if name in item.fixturenames), None)
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared))
    # the slow tests first, in their files' order: xdist hands out tests in collection order, and quick ones
    # left for the end keep both workers busy to the last (with the multi-process tune tests last, one worker
    # ran alone for the suite's final 85 s)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# Fuzzing profiles (tests/test_fuzz.py): "fast" keeps the whole suite quick; FKP_FUZZ=long runs many
# more examples of every property.
settings.register_profile(
    "fast",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", parent=settings.get_profile("fast"), max_examples=1000, derandomize=False)
settings.load_profile(os.environ.get("FKP_FUZZ", "fast"))
