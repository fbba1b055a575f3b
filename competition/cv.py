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
import queue
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

import numpy as np

from .config import Config
from .data import TestSet, TrainingSet
from .errors import InputError
from .folds import Folds
from .jobs import FoldJob, FoldResult, FoldsFailed
from .machine import fresh_backend_session, keep_freed_memory, stderr_silenced
from .run import Run, RunSpec


class FoldExecutor(Protocol):
    """Trains claimed fold jobs of a run and writes each finished fold into it."""

    batch: int | None  # how many jobs it takes at once (None: all)

    def train(self, jobs: list[FoldJob], run: Run, log) -> list[FoldResult]: ...

    def close(self) -> None: ...


_EVENTS = None  # in a fold process whose parent shows the run's progress: where its epochs go


def train_job(job: FoldJob, verbose: bool = False) -> FoldResult:
    """``train.train_fold(job)``, in a fold process (``fold_process``)."""
    with stderr_silenced(not verbose):  # the backend's C++ start-up lines, printed before any log level applies
        from . import train
        from .train import train_fold  # Keras loads in the fold processes only

    if _EVENTS is not None:
        events = _EVENTS
        train.epoch_listener = lambda *epoch: events.put(("epoch", *epoch))
        events.put(("job", job.label))
    fresh_backend_session()  # a job after another in the same process names its layers, and traces, as a first one
    return train_fold(job)


def _fold_process_start(events=None) -> None:
    global _EVENTS
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent ends this one
    _EVENTS = events


def fold_process(events=None) -> ProcessPoolExecutor:
    """A spawned process of its own for a run's fold jobs, one after another: each job in a new process would
    import Keras again (about 8 s on 2 cores), and this process, which holds the data, never loads Keras
    (about 570 MB). It ignores Ctrl-C: the process that started it ends it (``stop``) and tidies the run."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_fold_process_start,
        initargs=(events,),
    )


def stop(pool: ProcessPoolExecutor) -> None:
    """End a fold process now, whatever it is doing (Ctrl-C in the parent), and wait until it has ended."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()
    pool.shutdown(wait=True, cancel_futures=True)


def in_fresh_process(function, *args):
    """``function(*args)`` in a ``fold_process`` of its own, ended at once on Ctrl-C."""
    process = fold_process()
    try:
        return process.submit(function, *args).result()
    except KeyboardInterrupt:
        stop(process)
        raise
    finally:
        process.shutdown()


class LocalFolds:
    """Fold jobs one after another in one ``fold_process``, started on first use and ended with ``close``. With
    a ``console`` (a terminal's), the run's progress shows under the epoch lines (``progress.RunProgress``)."""

    batch = 1  # one claimed at a time: another process sharing the run takes the next

    def __init__(self, verbose: bool = False, console=None):
        self.verbose, self.process, self.console = verbose, None, console
        self.events = self.progress = None

    def plan(self, jobs: list[FoldJob]) -> None:
        """The jobs the run has left, for its progress line."""
        if self.console is None or not jobs:
            return
        from .progress import RunProgress

        trains = [job.config.specialist(job.specialist).train for job in jobs]
        minutes = max(job_minutes(job.config, job.folds.k) or train.max_minutes for job, train in zip(jobs, trains))
        self.events = multiprocessing.get_context("spawn").Queue()
        self.progress = RunProgress(self.console, len(jobs), max(train.epochs for train in trains), minutes)

    def _drain(self) -> None:
        while True:
            try:
                kind, *event = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "job":
                self.progress.job(*event)
            else:
                self.progress.epoch(*event)

    def _result(self, future) -> FoldResult:
        """The job's result, the run's progress redrawn while it trains."""
        if self.progress is None:
            return future.result()
        while True:
            try:
                result = future.result(timeout=0.25)
                break
            except TimeoutError:
                self._drain()
        self._drain()
        return result

    def train(self, jobs: list[FoldJob], run: Run, log) -> list[FoldResult]:
        self.process = self.process or fold_process(self.events)
        results = []
        for job in jobs:
            try:
                results.append(self._result(self.process.submit(train_job, job, self.verbose)))
            except BrokenProcessPool:  # killed (out of memory?): no wait goes on for it
                self.process = None
                run.discard_unfinished(job.specialist, job.fold)
                raise FoldsFailed(
                    f"{job.label}: the fold process ended without a word (killed, or out of memory?); the finished "
                    "folds are in the run: rerun the same command to train the rest"
                ) from None
            if self.progress is not None:
                self.progress.finished(job.label)
                self.progress.console.print(results[-1].summary, markup=False, highlight=False)
            else:
                log(results[-1].summary)
        return results

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.process is not None:
            self.process.shutdown()

    def interrupt(self) -> None:
        """Ctrl-C: end the fold process at once (its job's fold is not written)."""
        if self.process is not None:
            stop(self.process)
            self.process = None


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
    teachers: dict[int, np.ndarray] | None = None,
    log=print,
) -> list[FoldResult]:
    """Train the run's unfinished, unclaimed fold jobs with ``executor`` (``LocalFolds`` by default), a batch
    of them at a time, each batch claimed while it trains; a fold in ``teachers`` learns its teacher's answers
    where labels are missing (``distill.fold_teacher``)."""
    if only_fold is not None and not 0 <= only_fold < folds.k:
        raise InputError("--fold", f"fold {only_fold} does not exist: folds are 0..{folds.k - 1}")
    run.claim(RunSpec(training.fingerprint, folds.k, folds.seed, limit, config.to_dict(), folds.flip_axis))
    jobs = [
        FoldJob(run.path, name, fold, config, training, test, folds, teacher=(teachers or {}).get(fold))
        for name in config.trained
        for fold in (range(folds.k) if only_fold is None else [only_fold])
    ]
    budget = Budget(config.budget_minutes, len(config.trained) * folds.k) if config.budget_minutes else None
    executor = executor or LocalFolds()
    getattr(executor, "plan", lambda jobs: None)([job for job in jobs if not run.is_finished(job.specialist, job.fold)])
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
                    try:
                        trained = executor.train(todo, run, log)
                    except KeyboardInterrupt:  # the claims are released as the block unwinds
                        getattr(executor, "interrupt", lambda: None)()
                        for job in todo:
                            run.discard_unfinished(job.specialist, job.fold)
                        raise
                    if budget:
                        budget.spent(trained, time.monotonic() - began)
                    results += trained
    finally:
        executor.close()
    return results
