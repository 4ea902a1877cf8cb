"""Elapsed time and an estimate of the time left, for the one-line-per-epoch messages of the training loops."""

from __future__ import annotations

import time

__all__ = ["Clock", "format_duration"]


def format_duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`: what a person reads at a glance."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Clock:
    """Times the units of a job (epochs, or a benchmark's methods) that this process runs, `first` being where a
    resumed run starts, and extrapolates the remaining ones from their mean: the estimate of an epoch covers its
    training and evaluation, not the final save."""

    def __init__(self, total: int, first: int = 0) -> None:
        self.total, self.first = total, first
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def done(self, index: int) -> str:
        """`elapsed 1 min 02 s, ETA 3 min 10 s` once 0-based unit `index` is done (no ETA after the last)."""
        elapsed = self.elapsed()
        left = (self.total - index - 1) * elapsed / max(1, index + 1 - self.first)
        text = f"elapsed {format_duration(elapsed)}"
        return f"{text}, ETA {format_duration(left)}" if index + 1 < self.total else text
