"""`fkp cv`: every fold job of a run (each specialist on each fold, or one fold), handed to an executor: one
after another in a fold process of their own (``LocalFolds``), or as Ray tasks (``cluster.RayFolds``).

The claim-and-skip loop is written once, here: a finished fold is skipped, so a killed run resumes, and so
is a fold another live process has claimed, so processes sharing the run split its folds. An executor says
how many jobs it takes at once (``batch``); those are claimed together and held until they come back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol

from .config import Config
from .data import TestSet, TrainingSet
from .errors import InputError
from .folds import Folds
from .jobs import FoldJob, FoldResult
from .machine import keep_freed_memory, stderr_silenced
from .run import Run, RunSpec


class FoldExecutor(Protocol):
    """Trains claimed fold jobs of a run and writes each finished fold into it."""

    batch: int | None  # how many jobs it takes at once (None: all)

    def train(self, jobs: list[FoldJob], run: Run, log) -> list[FoldResult]: ...

    def close(self) -> None: ...


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
    return ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=keep_freed_memory
    )


def in_fresh_process(function, *args):
    """``function(*args)`` in a ``fold_process`` of its own."""
    with fold_process() as process:
        return process.submit(function, *args).result()


class LocalFolds:
    """Fold jobs one after another in one ``fold_process``, started on first use and ended with ``close``."""

    batch = 1  # one claimed at a time: another process sharing the run takes the next

    def __init__(self, verbose: bool = False):
        self.verbose, self.process = verbose, None

    def train(self, jobs: list[FoldJob], run: Run, log) -> list[FoldResult]:
        self.process = self.process or fold_process()
        results = [self.process.submit(train_job, job, self.verbose).result() for job in jobs]
        for result in results:
            log(result.summary)
        return results

    def close(self) -> None:
        if self.process is not None:
            self.process.shutdown()


class Budget:
    """A run's wall-clock budget (``budget_minutes``) shared by its fold jobs, so that `fkp cv` fills its time,
    no more, on a fast machine and a slow one alike: each fold's cosine is planned within the job's training
    minutes (``train.CosineSchedule``).

    Each of the run's jobs is owed an equal share of the budget, less ``RESERVE`` for fitting the run's
    inference head at the end. A job trains for what this process has left of the shares of the jobs it still
    has to train, split evenly among them, less the time a job spends outside training (the fold's set-up,
    its predictions, writing it): measured on the job before, guessed as ``FIRST_OVERHEAD`` for the first.
    Time saved or overspent by one job moves to the next. A resumed run owes each remaining job its share."""

    RESERVE = 30.0  # seconds: the head's fit and the report after the last job
    FIRST_OVERHEAD = 45.0  # seconds: the first job's time outside training (a fold process starting, its TTA)

    def __init__(self, minutes: float, jobs: int, clock=time.monotonic):
        self.share = max(minutes * 60 - self.RESERVE, 0.0) / jobs
        self.clock, self.started = clock, clock()
        self.trained, self.overhead = 0, self.FIRST_OVERHEAD

    def job_minutes(self, left: int) -> float:
        """Training minutes for each job of the next batch, with ``left`` jobs (the batch's included) still
        to train here; at least a second's worth, so a late job still trains its one epoch."""
        available = self.share * (self.trained + left) - (self.clock() - self.started)
        return max(available / left - self.overhead, 1.0) / 60

    def spent(self, results: list[FoldResult], seconds: float) -> None:
        """A batch of ``results`` came back after ``seconds``: one job's time outside training is the next's
        guess (a batch of several trained side by side says nothing of one job's)."""
        self.trained += len(results)
        if len(results) == 1:
            self.overhead = max(seconds - results[0].seconds, 0.0)


def job_minutes(config: Config, k: int) -> float:
    """A fold job's training minutes from ``config.budget_minutes`` before any job ran (0: no budget): what
    each of `fkp tune`'s trials trains, as the fold it stands for would in `fkp cv`."""
    return Budget(config.budget_minutes, len(config.trained) * k).job_minutes(1) if config.budget_minutes else 0.0


def skip_reason(run: Run, job: FoldJob, claim) -> str | None:
    """Why ``job`` is not trained here, given its fold's ``claim``: finished, or another live process's."""
    if run.is_finished(job.specialist, job.fold):
        return f"{job.label} already complete: skipped"
    if not claim.ours:
        return (
            f"{job.label} being trained by {claim.holder} since {claim.holder.since}: skipped "
            f"(if that process is gone, delete {claim.path})"
        )
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
    executor: FoldExecutor | None = None,
    log=print,
) -> list[FoldResult]:
    """Train the run's unfinished, unclaimed fold jobs with ``executor`` (``LocalFolds`` by default), a batch
    of them at a time, each batch claimed while it trains."""
    if only_fold is not None and not 0 <= only_fold < folds.k:
        raise InputError("--fold", f"fold {only_fold} does not exist: folds are 0..{folds.k - 1}")
    run.claim(RunSpec(training.fingerprint, folds.k, folds.seed, limit, config.to_dict(), folds.flip_axis))
    jobs = [
        FoldJob(run.path, name, fold, config, training, test, folds)
        for name in config.trained
        for fold in (range(folds.k) if only_fold is None else [only_fold])
    ]
    budget = Budget(config.budget_minutes, len(config.trained) * folds.k) if config.budget_minutes else None
    executor = executor or LocalFolds()
    size = executor.batch or max(len(jobs), 1)
    results = []
    try:
        for start in range(0, len(jobs), size):
            with contextlib.ExitStack() as held:
                todo = []
                for job in jobs[start : start + size]:
                    skipped = skip_reason(run, job, held.enter_context(run.claim_fold(job.specialist, job.fold)))
                    if skipped:
                        log(skipped)
                    else:
                        todo.append(job)
                if todo and budget:
                    left = sum(not run.is_finished(job.specialist, job.fold) for job in jobs[start:])
                    minutes = budget.job_minutes(left)
                    who = todo[0].label if len(todo) == 1 else f"{len(todo)} fold jobs, each"
                    log(f"{who}: {minutes:.1f} minutes of training, from budget_minutes = {config.budget_minutes:g}")
                    todo = [dataclasses.replace(job, minutes=minutes) for job in todo]
                if todo:
                    began = time.monotonic()
                    trained = executor.train(todo, run, log)
                    if budget:
                        budget.spent(trained, time.monotonic() - began)
                    results += trained
    finally:
        executor.close()
    return results
