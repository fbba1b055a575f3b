"""`fkp cv --cluster` and `fkp tune --cluster` on real Ray: the same run as on one machine, a killed worker,
workers that cannot see the driver's runs folder, tuning workers sharing one search."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile

import psutil
import pytest
from conftest import free_local_address
from test_tune import TINY_SPACE

from competition.run import Run

pytestmark = pytest.mark.xdist_group("ray")  # on one worker (`-n 2`): two local Ray clusters never run side by side
FKP = [sys.executable, "-m", "competition"]
SMALL = ["--folds", "2", "--limit", "80", "--config", "smoke"]


def fkp(*args, cwd, env=None):
    return subprocess.run(
        [*FKP, *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env or os.environ.copy()
    )


def cv_rmse(stdout: str) -> float:
    return float(stdout.strip().splitlines()[-1].removeprefix("cv_rmse="))


def test_cluster_without_ray_says_what_to_install(tmp_path, sample_dir):
    (tmp_path / "ray").mkdir()  # a `ray` that cannot be imported stands for Ray not installed
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    result = fkp("cv", "--data", sample_dir, *SMALL, "--cluster", "local", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "fkp: --cluster: needs Ray: pip install -e '.[cluster]'"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "options, line",
    [
        (["--cluster", "local", "--retries", -1], "fkp: --retries: must be at least 0, got -1"),
        (["--cluster", "local", "--gpus-per-fold", -1], "fkp: --gpus-per-fold: must be at least 0, got -1"),
        (["--cluster", "nonsense"], "fkp: --cluster: cannot join the Ray cluster at nonsense: "),
    ],
)
def test_bad_cluster_options_are_refused_in_one_line(tmp_path, sample_dir, options, line):
    result = fkp("cv", "--data", sample_dir, *SMALL, *options, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(line), result.stderr


@pytest.mark.slow
def test_a_task_no_node_can_take_is_refused_in_one_line(tmp_path, sample_dir):
    result = fkp("cv", "--data", sample_dir, *SMALL, "--cluster", "local", "--gpus-per-fold", 1000, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("fkp: --cluster: no node has 1 CPUs and 1000 GPUs for a task (the largest: ")


def fold_files(run) -> dict[str, bytes]:
    """Every file of a run that does not record time: predictions, histories, configs, the model's weights;
    of the TensorBoard logs (which do), the folders."""
    files = {
        str(path.relative_to(run)): path.read_bytes()
        for path in run.rglob("*")
        if path.is_file() and path.name not in ("model.keras", "fold.json") and "logs" not in path.parts
    }
    files.update({str(path.relative_to(run)): "folder" for path in run.glob("*/fold*/logs/*") if path.is_dir()})
    for model in run.rglob("model.keras"):  # its config.json and metadata.json hold object ids and a date
        files[f"{model.relative_to(run)}/weights"] = zipfile.ZipFile(model).read("model.weights.h5")
    for report in run.rglob("fold.json"):
        record = json.loads(report.read_text())
        files[str(report.relative_to(run))] = {
            key: value for key, value in record.items() if key not in ("seconds", "faces_per_second")
        }
    return files


def cv_killing_a_worker(args, cwd, env=None, workers_under=None) -> tuple[int, str]:
    """`fkp cv ARGS`; once a fold has trained an epoch, its Ray worker process (a descendant of the process
    ``workers_under``, default the driver's own local Ray instance) is killed. Its exit status and output."""
    cv = subprocess.Popen(
        [*FKP, *map(str, args)],
        cwd=cwd,
        env={**(env or os.environ), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, killed = [], False
    for line in cv.stdout:
        lines.append(line)
        if not killed and " epoch 1/" in line:
            next(
                process
                for process in psutil.Process(workers_under or cv.pid).children(recursive=True)
                if process.cmdline()[:1] == ["ray::_fold_task"]
            ).kill()
            killed = True
    output = "".join(lines)
    assert killed, output
    return cv.wait(timeout=60), output


ONE_NETWORK = [*SMALL, "--epochs", 3, "--set", "specialists.partial.enabled=false"]


@pytest.mark.slow
def test_a_cluster_run_is_the_same_run_as_on_one_machine_even_when_a_worker_dies(tmp_path, sample_dir):
    """Both folds on a local Ray instance of 2 CPUs, one fold's worker killed in mid-training: the run ends
    with every fold, the same files and cv_rmse as without --cluster, and the same submission. Without
    --cluster both folds train in one process, fold 1 after fold 0; on Ray each in a fresh worker: the same
    weights show that a job after another starts from a clean Keras state."""
    local = fkp("cv", "--data", sample_dir, *ONE_NETWORK, "--run", "local", cwd=tmp_path)
    assert local.returncode == 0, local.stdout + local.stderr
    status, ray = cv_killing_a_worker(
        ["cv", "--data", sample_dir, *ONE_NETWORK, "--run", "ray", "--cluster", "local"], tmp_path
    )
    assert status == 0, ray
    assert re.search(rf"\[full fold \d\] retried, training on {socket.gethostname()} \(attempt 2\)", ray), ray
    for label in ("[full fold 0]", "[full fold 1]"):
        assert re.search(rf"{re.escape(label)} best val_rmse [\d.]+ after 3 epochs", ray), ray
    assert "Fold jobs on the cluster" in ray
    assert abs(cv_rmse(ray) - cv_rmse(local.stdout)) < 1e-5
    expected, made = fold_files(tmp_path / "runs" / "local"), fold_files(tmp_path / "runs" / "ray")
    assert made.keys() == expected.keys() and len(made) == 3 + 2 * (8 + 2)  # run.json, config.toml, head.json
    assert [name for name in expected if made[name] != expected[name]] == []
    for run in ("local", "ray"):
        blend = fkp("blend", "--data", sample_dir, "--run", run, "--out", f"{run}.csv", cwd=tmp_path)
        assert blend.returncode == 0, blend.stderr
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    # a rerun on a cluster skipping finished folds is checked by
    # test_workers_that_cannot_see_the_drivers_runs_folder_send_the_run_whole


@pytest.fixture
def ray_head(tmp_path):
    """A one-node Ray cluster of 2 CPUs started with `ray start --head` in a folder of its own, where its
    workers run: another working directory than the driver's. The head's process, address and folder."""
    address = free_local_address()
    folder = tmp_path / "head"
    folder.mkdir()
    # Ray's own folder, short for its sockets' paths: its address file there is not left for `--cluster auto`
    temp = tempfile.mkdtemp(prefix="fkp-ray-")
    head = subprocess.Popen(
        [
            "ray",
            "start",
            "--head",
            "--block",
            "--num-cpus",
            "2",
            "--port",
            address.rpartition(":")[2],
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
            "--temp-dir",
            temp,
        ],
        cwd=folder,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield head, address, folder
    finally:
        head.terminate()  # `ray start --block` stops the processes it started
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_workers_that_cannot_see_the_drivers_runs_folder_send_the_run_whole(tmp_path, sample_dir, ray_head):
    """A cluster joined by address, whose workers run in another folder: a fold whose worker is killed with
    no retry left fails in one line while the other is kept; the rerun trains the missing fold only."""
    head, address, head_folder = ray_head
    driver = tmp_path / "driver"
    driver.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    args = ["cv", "--data", sample_dir, *ONE_NETWORK, "--run", "joined", "--cluster", address]
    status, failed = cv_killing_a_worker([*args, "--retries", 0], driver, env, workers_under=head.pid)
    assert status == 1, failed
    lost = re.findall(rf"\[full fold (\d)\] failed on {socket.gethostname()} after 1 attempt\(s\): \S", failed)
    assert len(lost) == 1, failed
    assert "fkp: 1 of 2 fold jobs failed ([full fold" in failed
    run = driver / "runs" / "joined" / "full"
    assert [path.name for path in run.iterdir()] == [f"fold{1 - int(lost[0])}"]
    again = fkp(*args, cwd=driver, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already complete: skipped") == 1
    assert sorted(path.name for path in run.iterdir()) == ["fold0", "fold1"]
    assert not list(head_folder.iterdir())  # the workers' working directory got nothing
    assert len(Run(driver / "runs" / "joined").oof("tta")["full"]) == 80  # every face out of fold, readable


@pytest.mark.slow
def test_tune_on_a_local_cluster_runs_two_workers_that_share_one_search(tmp_path, sample_dir):
    (tmp_path / "tiny.toml").write_text(TINY_SPACE)
    tune = fkp(
        "tune",
        "--data",
        sample_dir,
        "--space",
        "tiny.toml",
        "--config",
        "smoke",
        "--specialist",
        "partial",
        "--limit",
        60,
        "--epochs",
        1,
        "--max-trials",
        4,
        "--project",
        "shared",
        "--cluster",
        "local",
        cwd=tmp_path,
    )
    assert tune.returncode == 0, tune.stdout + tune.stderr
    ran = {
        worker: set(trials.split(", "))
        for worker, trials in re.findall(r"\[partial\] (worker-\d) trained trials ([\d, ]+)\n", tune.stdout)
    }
    assert sorted(ran) == ["worker-0", "worker-1"], tune.stdout
    assert not ran["worker-0"] & ran["worker-1"] and ran["worker-0"] | ran["worker-1"] == set("0123")
    project = tmp_path / "runs" / "tune" / "shared" / "partial"
    statuses = {path.parent.name: json.loads(path.read_text())["status"] for path in project.glob("trial_*/trial.json")}
    assert statuses == {f"trial_{trial}": "COMPLETED" for trial in "0123"}
    assert (tmp_path / "configs" / "tuned.toml").exists()
    assert tune.stdout.strip().splitlines()[-1].startswith("best_val_rmse=")


@pytest.mark.slow
def test_tune_on_a_cluster_whose_workers_all_fail_ends_in_one_line_and_keeps_the_search(tmp_path, sample_dir):
    """Every tuning worker killed as it starts, no retries: Keras Tuner's chief would wait forever for
    them; `fkp tune --cluster` ends with one line naming them, exit status 1, the search kept for a resume and
    no claim left."""
    (tmp_path / "tiny.toml").write_text(TINY_SPACE)
    args = ["tune", "--data", sample_dir, "--space", "tiny.toml", "--config", "smoke", "--specialist", "partial",
            "--limit", 60, "--epochs", 3, "--max-trials", 4, "--project", "doomed", "--cluster", "local",
            "--retries", 0]  # fmt: skip
    tune = subprocess.Popen(
        [*FKP, *map(str, args)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = set()
    for line in tune.stdout:  # once the workers are asked for, each is killed as it starts its task
        if "workers on the cluster" not in line:
            continue
        deadline = time.monotonic() + 240
        while len(killed) < 2 and time.monotonic() < deadline:
            for process in psutil.Process(tune.pid).children(recursive=True):
                try:
                    if process.cmdline()[:1] == ["ray::_tune_worker"] and process.pid not in killed:
                        process.kill()
                        killed.add(process.pid)
                except psutil.Error:
                    continue
            time.sleep(0.2)
        break
    out, err = tune.communicate(timeout=300)
    assert len(killed) == 2 and tune.returncode == 1, (out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("fkp: 2 of 2 tuning workers failed for good (worker-") and "worker-0" in last, err
    assert "worker-1" in last and "run the same command again to resume it" in last
    project = tmp_path / "runs" / "tune" / "doomed"
    assert (project / "partial" / "search.json").exists()
    assert not list(project.glob("*.claim.*"))
