"""Where a `fkp cv` run stands, at a glance: in a terminal, one rich progress line under the epoch lines, with the
fold job (k of K), its epoch and the time left for the whole run; elsewhere (a log file, a pipe) nothing but the
epoch lines, as before.

Time left: from the run's planned budget where it has one (each fold job's share of ``budget_minutes``, or its
``train.max_minutes``: the jobs not
started take their whole budget, the current one what is left of its own), and never more than the pace so far
predicts for the epochs left (every job's planned epochs).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


def _clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RunProgress:
    """The progress line of a run's ``jobs`` fold jobs of ``epochs`` planned epochs each (``minutes`` of budget
    each, 0: none). ``job(label)`` when a job starts, ``epoch(label, epoch, epochs, line)`` after each epoch (the
    epoch line is printed above the progress line), ``close()`` at the end."""

    def __init__(self, console: Console, jobs: int, epochs: int, minutes: float = 0.0, clock=time.monotonic):
        self.console, self.jobs, self.epochs, self.minutes, self.clock = console, jobs, epochs, minutes, clock
        self.started = clock()
        self.done_jobs, self.job_started, self.epochs_done, self.current = 0, self.started, 0, None
        self.epoch_now, self.epochs_planned = 0, epochs
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[left]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(self._describe(), total=jobs * epochs, left="")
        self.progress.start()

    def _describe(self) -> str:
        job = min(self.done_jobs + (self.current is not None), self.jobs)
        where = f"{self.current} " if self.current else ""
        return f"{where}fold job {max(job, 1)} of {self.jobs}, epoch {self.epoch_now}/{self.epochs_planned}"

    def seconds_left(self) -> float | None:
        """The time left for the whole run: the budget's, capped by the pace's; None before the first epoch
        without a budget."""
        now = self.clock()
        epochs_left = (self.jobs - self.done_jobs) * self.epochs - self.epoch_now
        pace = (now - self.started) / self.epochs_done * max(epochs_left, 0) if self.epochs_done else None
        if not self.minutes:
            return pace
        in_job = max(self.minutes * 60 - (now - self.job_started), 0) if self.current else 0.0
        not_started = self.jobs - self.done_jobs - (self.current is not None)
        budget = in_job + not_started * self.minutes * 60
        return budget if pace is None else min(budget, pace)

    def _refresh(self) -> None:
        left = self.seconds_left()
        self.progress.update(
            self.task,
            description=self._describe(),
            completed=self.done_jobs * self.epochs + min(self.epoch_now, self.epochs),
            left="" if left is None else f"{_clock(left)} left",
        )

    def job(self, label: str) -> None:
        if self.current is not None:
            self.done_jobs += 1
        self.current, self.job_started, self.epoch_now, self.epochs_planned = label, self.clock(), 0, self.epochs
        self._refresh()

    def epoch(self, label: str, epoch: int, epochs: int, line: str) -> None:
        self.current, self.epoch_now, self.epochs_planned = label, epoch, epochs
        self.epochs_done += 1
        self.console.print(line, markup=False, highlight=False)
        self._refresh()

    def finished(self, label: str) -> None:
        """A job ended (trained, or its epochs ended early)."""
        if self.current == label:
            self.done_jobs, self.current, self.epoch_now = self.done_jobs + 1, None, 0
        self._refresh()

    def close(self) -> None:
        self.progress.stop()
