"""Claims on a fold or a search: one holder at a time, stale ones taken over, live ones left alone;
`fkp cv` in two processes on one run trains every fold exactly once."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_claim

from competition.claims import claimed
from competition.cluster import LOCAL, ClusterOptions, RayFolds
from competition.config import load_config
from competition.cv import run_cv
from competition.data import load_test
from competition.folds import make_folds
from competition.run import Run

FKP = [sys.executable, "-m", "competition"]


def test_a_claim_is_held_once_and_released_when_its_block_ends(tmp_path):
    base = tmp_path / "fold0.claim"
    with claimed(base) as first:
        assert first.ours and first.holder.pid == os.getpid()
        assert json.loads(first.path.read_text())["pid"] == os.getpid()
        with claimed(base) as second:  # another claimant, here the same process
            assert not second.ours and second.holder == first.holder
    assert not list(tmp_path.iterdir())
    with claimed(base) as again:
        assert again.ours


def test_a_claim_is_released_when_its_block_fails(tmp_path):
    with pytest.raises(RuntimeError), claimed(tmp_path / "fold0.claim"):
        raise RuntimeError("training failed")
    assert not list(tmp_path.iterdir())


def test_a_dead_processs_claim_is_taken_over(tmp_path, dead_pid):
    write_claim(tmp_path / "fold0.claim.0", dead_pid)
    with claimed(tmp_path / "fold0.claim") as claim:
        assert claim.ours and claim.path.name == "fold0.claim.1"
        assert sorted(path.name for path in tmp_path.iterdir()) == ["fold0.claim.1"]


def test_a_damaged_claim_is_taken_over(tmp_path):
    (tmp_path / "fold0.claim.0").write_text("{")
    with claimed(tmp_path / "fold0.claim") as claim:
        assert claim.ours


@pytest.mark.parametrize("host", [None, "another-machine"])
def test_a_live_or_foreign_claim_is_left_alone(tmp_path, live_pid, dead_pid, host):
    """A live process of this host holds its claim; another host's process cannot be seen, so its
    claim is never taken over, even with a process id that is dead here."""
    pid = live_pid if host is None else dead_pid
    write_claim(tmp_path / "fold0.claim.0", pid, host)
    with claimed(tmp_path / "fold0.claim") as claim:
        assert not claim.ours and claim.holder.pid == pid
        assert str(claim.holder) == f"{host or socket.gethostname()}:{pid}"
    assert json.loads((tmp_path / "fold0.claim.0").read_text())["pid"] == pid


def _claim_and_hold(base: Path, barrier, results) -> None:
    with claimed(base) as claim:
        results.put(claim.ours)
        barrier.wait(timeout=60)  # hold it until every process has tried


def test_of_processes_taking_over_one_stale_claim_at_once_exactly_one_wins(tmp_path, dead_pid):
    write_claim(tmp_path / "fold0.claim.0", dead_pid)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    processes = [
        context.Process(target=_claim_and_hold, args=(tmp_path / "fold0.claim", barrier, results)) for _ in range(6)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert sorted(results.get(timeout=5) for _ in processes) == [False] * 5 + [True]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("cluster", [None, ClusterOptions(LOCAL)], ids=["here", "on a cluster"])
def test_cv_skips_folds_a_live_process_trains(tmp_path, sample_dir, training, live_pid, cluster):
    run = Run(tmp_path / "run")
    for fold in (0, 1):
        write_claim(run.path / "full" / f"fold{fold}.claim.0", live_pid)
    lines = []
    results = run_cv(
        load_config("smoke", ["specialists.partial.enabled=false"]),
        training.head(40),
        load_test(sample_dir),
        make_folds(training.head(40), 2, 42),
        run,
        executor=None if cluster is None else RayFolds(cluster),
        log=lines.append,
    )
    assert results == [] and run.finished_folds("full") == []
    for fold, line in enumerate(lines):
        claim = run.path / "full" / f"fold{fold}.claim.0"
        assert re.fullmatch(
            rf"\[full fold {fold}\] being trained by {socket.gethostname()}:{live_pid} since "
            rf"[-\d]+ [:\d]+: skipped \(if that process is gone, delete {claim}\)",
            line,
        ), line
        assert json.loads(claim.read_text())["pid"] == live_pid
    assert len(lines) == 2


@pytest.mark.slow
def test_two_cv_processes_on_one_run_train_every_fold_once(tmp_path, run_data, dead_pid):
    """Two `fkp cv` started together on one run (and a claim left by a killed one): each fold job is
    trained by exactly one of them, and the run blends."""
    args = [
        *FKP,
        "cv",
        "--data",
        str(run_data),
        "--config",
        "smoke",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--limit",
        "120",
        "--set",
        "specialists.partial.enabled=false",
        "--run",
        "shared",
    ]
    run = Run(tmp_path / "runs" / "shared")
    write_claim(run.path / "full" / "fold1.claim.0", dead_pid)  # killed while training
    logs = [tmp_path / f"cv{index}.log" for index in (0, 1)]
    processes = []
    for log in logs:
        with open(log, "w") as out:
            processes.append(
                subprocess.Popen(args, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
            )
    for process, log in zip(processes, logs):
        assert process.wait(timeout=600) == 0, log.read_text()
    outputs = [log.read_text() for log in logs]
    trained = [label for output in outputs for label in re.findall(r"(\[\w+ fold \d\]) best val_rmse", output)]
    assert sorted(trained) == ["[full fold 0]", "[full fold 1]"]
    assert run.finished_folds("full") == [0, 1]
    assert all(run.logs_dir("full", fold).joinpath("validation").is_dir() for fold in (0, 1))
    assert not list(run.path.glob("*/*.claim.*")) and not list(run.path.glob("*/*.logs"))
    blend = subprocess.run(
        [*FKP, "blend", "--data", str(run_data), "--run", "shared", "--out", "sub.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert blend.returncode == 0, blend.stdout + blend.stderr
