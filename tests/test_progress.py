"""`fkp cv`'s progress line in a terminal: fold job k of K, the epoch, the time left for the whole run. (Out of a
terminal the fold process prints its line per epoch, as tests/test_interrupt.py reads from a pipe.)"""

import io

from rich.console import Console

from competition.progress import RunProgress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def terminal() -> tuple[Console, io.StringIO]:
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=140, color_system=None), screen


def test_the_progress_line_shows_the_fold_job_the_epoch_and_the_time_left():
    console, screen = terminal()
    clock = Clock()
    progress = RunProgress(console, jobs=5, epochs=10, minutes=0, clock=clock)
    progress.job("[full fold 0]")
    for epoch in range(1, 11):
        clock.now += 6
        progress.epoch("[full fold 0]", epoch, 10, f"[full fold 0] epoch {epoch}/10  rmse 3.000")
    progress.finished("[full fold 0]")
    progress.job("[full fold 1]")
    clock.now += 6
    progress.epoch("[full fold 1]", 1, 10, "[full fold 1] epoch 1/10  rmse 3.000")
    progress._refresh()
    progress.progress.refresh()
    progress.close()
    shown = screen.getvalue()
    assert "[full fold 0] epoch 10/10  rmse 3.000" in shown  # the epoch lines, above the progress line
    assert "[full fold 1] fold job 2 of 5, epoch 1/10" in shown
    assert "3:54 left" in shown  # 39 epochs left at the pace so far, 6 s each


def test_time_left_comes_from_the_planned_budget_capped_by_the_pace():
    console, _ = terminal()
    clock = Clock()
    progress = RunProgress(console, jobs=3, epochs=100, minutes=2, clock=clock)
    assert progress.seconds_left() == 360  # three jobs of 2 minutes, none started
    progress.job("[full fold 0]")
    clock.now += 30
    progress.epoch("[full fold 0]", 1, 100, "[full fold 0] epoch 1/100")
    assert progress.seconds_left() == 90 + 240  # the rest of this job's budget, then two whole budgets
    fast = RunProgress(console, jobs=3, epochs=2, minutes=2, clock=clock)
    fast.job("[full fold 0]")
    clock.now += 1
    fast.epoch("[full fold 0]", 1, 2, "[full fold 0] epoch 1/2")
    assert fast.seconds_left() == 5  # 5 epochs left at 1 s each: well within the budget
    progress.close()
    fast.close()
