"""`fkp cv` under Keras's other backends, as on a GPU machine without TensorFlow.

Each backend's run is skipped where that backend is not installed.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

from competition.run import Run


@pytest.mark.slow
@pytest.mark.parametrize("config", ["smoke", "heatmap"])  # the regression and heatmap families
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cv_runs_under_the_backend(backend, config, run_data, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    cv = subprocess.run(
        [
            sys.executable,
            "-m",
            "competition",
            "cv",
            "--data",
            str(run_data),
            "--folds",
            "2",
            "--epochs",
            "1",
            "--limit",
            "100",
            "--config",
            config,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert cv.returncode == 0, cv.stdout + cv.stderr
    assert cv.stdout.strip().splitlines()[-1].startswith("cv_rmse=")
    run = Run(tmp_path / "runs" / config)
    for specialist in run.spec.specialists:
        assert [report["backend"] for report in run.fold_reports(specialist).values()] == [backend, backend]
        assert all(path.exists() for path in run.models(specialist).values())
