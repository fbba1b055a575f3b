"""`fkp cv` under Keras's other backends, as on a GPU machine without TensorFlow.

Each backend's run is skipped where that backend is not installed.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cv_runs_under_the_backend(backend, data_dir, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    cv = subprocess.run(
        [sys.executable, "-m", "competition", "cv", "--data", str(data_dir), "--folds", "2", "--epochs", "1",
         "--limit", "100", "--config", "smoke"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert cv.returncode == 0, cv.stdout + cv.stderr
    last = cv.stdout.strip().splitlines()[-1]
    assert last.startswith("cv_rmse=") and 0 < float(last.removeprefix("cv_rmse=")) < 30
    for specialist in ("full", "partial"):
        for fold in (0, 1):
            folder = tmp_path / "runs" / "smoke" / specialist / f"fold{fold}"
            assert json.loads((folder / "fold.json").read_text())["backend"] == backend
            assert (folder / "model.keras").exists()
