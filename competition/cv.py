"""`fkp cv`: every fold job of a run (each specialist on each fold, or one fold), one after another in a process
of their own, or on a Ray cluster (``competition/cluster.py``)."""

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


def train_job(job: FoldJob, verbose: bool = False) -> FoldResult:
    """``train.train_fold(job)``, in a fold process (``fold_process``)."""
    with stderr_silenced(not verbose):  # the backend's C++ start-up lines, printed before any log level applies
        from .train import train_fold  # Keras loads in the fold processes only
    import keras

    keras.utils.clear_session()  # a job after another in the same process names its layers as a first one does
    return train_fold(job)


def fold_process() -> ProcessPoolExecutor:
    """A spawned process of its own for a run's fold jobs, one after another: each job in a new process would
    import Keras again (about 8 s on 2 cores), and this process, which holds the data, never loads Keras
    (about 570 MB)."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=keep_freed_memory)


def in_fresh_process(function, *args):
    """``function(*args)`` in a ``fold_process`` of its own."""
    with fold_process() as process:
        return process.submit(function, *args).result()


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
    """Train the run's unfinished fold jobs one after another in a process of their own or, with ``cluster``,
    each as a Ray task; a finished fold is skipped, so a killed run resumes, and so is a fold another live process has
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
    with fold_process() as process:
        for job in jobs:
            with run.claim_fold(job.specialist, job.fold) as claim:
                skipped = skip_reason(run, job, claim)
                if skipped:
                    log(skipped)
                    continue
                result = process.submit(train_job, job, verbose).result()
            log(result.summary)
            results.append(result)
    return results
