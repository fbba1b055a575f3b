"""The config `fkp cv` picks for the machine, and the backend's start-up lines kept out of the terminal."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_input import fkp, small  # noqa: F401  (the small data fixture)

from competition.machine import gpu_for_backend


def _stop_before_training(runs_dir, name):
    """A run made on other data: `fkp cv` refuses to add folds to it, after choosing its config."""
    (runs_dir / name).mkdir(parents=True)
    (runs_dir / name / "run.json").write_text(
        '{"fingerprint": "other", "folds": 5, "fold_seed": 42, "limit": null, "config": {}}'
    )


@pytest.mark.skipif(bool(glob.glob("/dev/nvidia[0-9]*")), reason="this machine has an NVIDIA device")
def test_without_a_gpu_cv_picks_the_cpu_config_and_says_why(small, tmp_path):  # noqa: F811
    _stop_before_training(tmp_path / "runs", "cpu")
    result = fkp("cv", "--data", small, "--runs-dir", tmp_path / "runs", "--folds-dir", tmp_path / "folds")
    assert "config cpu: no NVIDIA device on this machine (pass --config to choose)" in result.stdout
    assert "runs/cpu/run.json" in result.stderr and result.exit_code == 2
    assert gpu_for_backend() == (False, "no NVIDIA device on this machine")


def test_an_explicit_config_wins_and_names_the_run(small, tmp_path):  # noqa: F811
    _stop_before_training(tmp_path / "runs", "wide")
    result = fkp(
        "cv", "--data", small, "--config", "wide", "--runs-dir", tmp_path / "runs", "--folds-dir", tmp_path / "folds"
    )
    assert "config " not in result.stdout.split("\n")[0] and "runs/wide/run.json" in result.stderr


def test_stderr_silenced_hides_what_cpp_libraries_write_to_fd_2(tmp_path):
    script = (
        "import os\nfrom competition.machine import stderr_silenced\n"
        "with stderr_silenced():\n    os.write(2, b'absl chatter\\n')\nos.write(2, b'fkp line\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert result.stderr == "fkp line\n"


_PAGE_FAULTS = """
import ctypes, resource, sys
from competition.machine import keep_freed_memory
kept = sys.argv[1] == "kept" and keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(16 << 20) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, 16 << 20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    for block in blocks:
        libc.free(block)
print(kept, *faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_steps_freed_buffers_are_reused_instead_of_faulted_in_again():
    """A training step's pattern in miniature: three 16 MiB buffers written, then freed together, five times.
    By default glibc hands the freed heap top back to the kernel (it exceeds the trim threshold), so every step
    faults all 12,288 pages in again; with freed memory kept, only the first step does. This is glibc's rule,
    the same on any machine; what it saves in training is `benchmarks/bench_allocator.py`'s to measure."""
    faults = {}
    for mode in ("default", "kept"):
        out = subprocess.run([sys.executable, "-c", _PAGE_FAULTS, mode], capture_output=True, text=True, check=True)
        kept, *counts = out.stdout.split()
        assert kept == str(mode == "kept")
        faults[mode] = [int(count) for count in counts]
    first, *later = faults["default"]
    assert first > 0 and min(later) > first / 2, faults
    first, *later = faults["kept"]
    assert first > 0 and sum(later) < first / 100, faults
