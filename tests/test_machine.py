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
    (runs_dir / name / "run.json").write_text('{"fingerprint": "other", "folds": 5, "fold_seed": 42, "limit": null, '
                                              '"config": {}}')


@pytest.mark.skipif(bool(glob.glob("/dev/nvidia[0-9]*")), reason="this machine has an NVIDIA device")
def test_without_a_gpu_cv_picks_the_cpu_config_and_says_why(small, tmp_path):  # noqa: F811
    _stop_before_training(tmp_path / "runs", "cpu")
    result = fkp("cv", "--data", small, "--runs-dir", tmp_path / "runs", "--folds-dir", tmp_path / "folds")
    assert "config cpu: no NVIDIA device on this machine (pass --config to choose)" in result.stdout
    assert "runs/cpu/run.json" in result.stderr and result.exit_code == 2
    assert gpu_for_backend() == (False, "no NVIDIA device on this machine")


def test_an_explicit_config_wins_and_the_sample_picks_smoke(small, tmp_path):  # noqa: F811
    _stop_before_training(tmp_path / "runs", "wide")
    result = fkp("cv", "--data", small, "--config", "wide", "--runs-dir", tmp_path / "runs",
                 "--folds-dir", tmp_path / "folds")
    assert "config " not in result.stdout.split("\n")[0] and "runs/wide/run.json" in result.stderr
    _stop_before_training(tmp_path / "runs", "sample")
    result = fkp("cv", "--runs-dir", tmp_path / "runs", "--folds-dir", tmp_path / "folds")
    assert "config smoke: the bundled sample" in result.stdout


def test_stderr_silenced_hides_what_cpp_libraries_write_to_fd_2(tmp_path):
    script = ("import os\nfrom competition.machine import stderr_silenced\n"
              "with stderr_silenced():\n    os.write(2, b'absl chatter\\n')\nos.write(2, b'fkp line\\n')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.stderr == "fkp line\n"



_PAGE_FAULTS = """
import resource, sys
from competition.machine import keep_freed_memory
kept = sys.argv[1] == "kept" and keep_freed_memory()
from competition import data
from competition.config import load_config
from competition.folds import make_folds
from competition.train import build_fold_model, prepare_fold, train_stage
training = data.load_training(data.bundled_sample())
settings = load_config("cpu").specialist("full")
prepared = prepare_fold("full", 0, settings, training, make_folds(training, 5, 0), seed=0)
model = build_fold_model(prepared, settings)
train_stage(model, prepared, settings.train, epochs=1, log_prefix="[warm-up]")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
train_stage(model, prepared, settings.train, epochs=2, log_prefix="[counted]")
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_training_reuses_freed_memory_instead_of_faulting_it_in_again():
    """The CPU profile's network trains 2 epochs on the sample's fold 0, in a process of its own, with glibc's
    default allocator and with freed memory kept: kept, its page faults drop by far more than half (seen
    here: 495,369 against 24,472 on an AMD EPYC; 15,692 against 9,715 on an Intel Xeon whose default allocator
    already faults little, so the bound is a fifth fewer faults and a kept count that stays small)."""
    counts = {}
    for mode in ("default", "kept"):
        out = subprocess.run([sys.executable, "-c", _PAGE_FAULTS, mode], capture_output=True, text=True, check=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        kept, faults = out.stdout.split()[-2:]
        assert kept == str(mode == "kept")
        counts[mode] = int(faults)
    assert counts["kept"] < 0.8 * counts["default"] and counts["kept"] < 50_000, counts
