"""`fkp cv`: every fold job of a run (each specialist on each fold, or one fold) in a process of its own, or
on a Ray cluster (``competition/cluster.py``)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from .config import Config
from .data import TestSet, TrainingSet
from .errors import InputError
from .folds import Folds
from .jobs import FoldJob, FoldResult
from .machine import keep_freed_memory, stderr_silenced
from .runs import Run, RunSpec

if TYPE_CHECKING:
    from .cluster import ClusterOptions


def _train_fold(job: FoldJob, verbose: bool) -> FoldResult:
    with stderr_silenced(not verbose):  # the backend's C++ start-up lines, printed before any log level applies
        from .train import train_fold  # Keras loads in the fold's own process only

    return train_fold(job)


def in_fresh_process(function, *args):
    """``function(*args)`` in a spawned process of its own. The backend keeps memory for every model a
    process has built (TensorFlow about 100 MB each), so a run of ten would grow by a GiB; and this
    process, which holds the data, never loads Keras (about 570 MB)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=keep_freed_memory) as pool:
        return pool.submit(function, *args).result()


def train_in_fresh_process(job: FoldJob, verbose: bool = False) -> FoldResult:
    """``train.train_fold(job)`` in a process of its own."""
    return in_fresh_process(_train_fold, job, verbose)


def skip_reason(run: Run, job: FoldJob, claim) -> str | None:
    """Why ``job`` is not trained here, given its fold's ``claim``: finished, or another live process's."""
    if run.is_finished(job.specialist, job.fold):
        return f"{job.label} already complete: skipped"
    if not claim.ours:
        return (f"{job.label} being trained by {claim.holder} since {claim.holder.since}: skipped "
                f"(if that process is gone, delete {claim.path})")
    return None


def run_cv(
    config: Config,
    training: TrainingSet,
    test: TestSet,
    folds: Folds,
    run: Run,
    *,
    only_fold: int | None = None,
    limit: int | None = None,
    verbose: bool = False,
    cluster: ClusterOptions | None = None,
    log=print,
) -> list[FoldResult]:
    """Train the run's unfinished fold jobs, each in a process of its own or, with ``cluster``, as a Ray
    task; a finished fold is skipped, so a killed run resumes, and so is a fold another live process has
    claimed, so processes sharing the run split its folds."""
    if only_fold is not None and not 0 <= only_fold < folds.k:
        raise InputError("--fold", f"fold {only_fold} does not exist: folds are 0..{folds.k - 1}")
    run.claim(RunSpec(training.fingerprint, folds.k, folds.seed, limit, config.to_dict(), folds.flip_axis))
    jobs = [FoldJob(run.path, name, fold, config, training, test, folds) for name in config.trained
            for fold in (range(folds.k) if only_fold is None else [only_fold])]
    if cluster is not None:
        from .cluster import train_on_cluster

        return train_on_cluster(jobs, run, cluster, quiet=not verbose, log=log)
    results = []
    for job in jobs:
        with run.claim_fold(job.specialist, job.fold) as claim:
            skipped = skip_reason(run, job, claim)
            if skipped:
                log(skipped)
                continue
            result = train_in_fresh_process(job, verbose)
        log(result.summary)
        results.append(result)
    return results
