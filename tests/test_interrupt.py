"""Ctrl-C in the middle of `fkp cv`, `fkp tune`, `fkp blend` and `fkp export`: one line saying what was kept and how
to resume, exit status 130, no partial file and no claim left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # this checkout's fkp, whatever is installed
pytestmark = pytest.mark.slow  # each starts fkp in a process of its own (cv and tune train)

# `fkp` as a user runs it, but a rename of a finished temporary file (the last step of every write) first says so
# and waits: the test presses Ctrl-C there, with a whole temporary file on disk that must not be left behind.
ANNOUNCING = """
import os, sys, time
rename = os.replace
def announced(source, target, *args, **kwargs):
    if ".tmp" in os.fspath(source) and os.environ.get("FKP_TEST_HOLD_WRITES"):
        print(f"fkp-test: writing {os.fspath(target)}", flush=True)
        time.sleep(300)
    return rename(source, target, *args, **kwargs)
os.replace = announced
from competition.cli import app
app(prog_name="fkp")
"""


def interrupted(arguments: list, cwd: Path, when: str, hold_writes: bool = False) -> subprocess.CompletedProcess:
    """fkp ``arguments``, sent SIGINT once a line of its output holds ``when``."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **({"FKP_TEST_HOLD_WRITES": "1"} if hold_writes else {})}
    process = subprocess.Popen(
        [sys.executable, "-c", ANNOUNCING, *map(str, arguments)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal, even under a runner
    )
    seen = []
    for line in process.stdout:
        seen.append(line)
        if when in line:
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(arguments, process.returncode, "".join(seen) + out, err)


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders, claims and training logs of unfinished folds under ``folder``."""
    return [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if ".tmp" in path.name or ".claim." in path.name or path.name.endswith(".logs")
    ]


COMMANDS = {
    "cv": (
        ["cv", "--data", "{sample}", "--config", "smoke", "--folds", 2, "--limit", 40, "--epochs", 3,
         "--set", "specialists.partial.enabled=false"],
        "epoch 1/",
        False,
        "the folds finished so far are kept in runs/smoke",
    ),
    "tune": (
        ["tune", "--specialist", "full", "--data", "{sample}", "--config", "smoke", "--tuner", "random",
         "--max-trials", 2, "--epochs", 3, "--limit", 40, "--folds", 2],
        "epoch 1/",
        False,
        "the search's finished trials are kept in runs/tune/smoke/full",
    ),
    "blend": (
        ["blend", "--data", "{sample}", "--run", "good", "--runs-dir", "runs", "--out", "subs/submission.csv"],
        "fkp-test: writing",
        True,
        "subs/submission.csv and the files beside it are each whole",
    ),
    "export": (
        ["export", "--run", "good", "--runs-dir", "runs", "--out", "model.keras", "--no-tta"],
        "fkp-test: writing",
        True,
        "nothing was written (model.keras is as it was)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_ends_with_one_line_and_leaves_nothing_half_done(command, tmp_path, sample_dir, tiny_run):
    arguments, when, hold_writes, kept = COMMANDS[command]
    if command in ("blend", "export"):
        shutil.copytree(tiny_run, tmp_path / "runs")
    arguments = [str(a).format(sample=sample_dir) for a in arguments]
    result = interrupted(arguments, tmp_path, when, hold_writes)
    assert result.returncode == 130, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fkp: interrupted: ") and kept in lines[0], lines
    assert "run the same command again" in lines[0]
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "model.keras").exists()  # export: the model was never renamed into place
    assert not (tmp_path / "subs").exists() or list((tmp_path / "subs").iterdir()) == []  # blend: nor a file of it
