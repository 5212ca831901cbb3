"""The timing helpers the benchmark scripts share."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def median_ms(action: Callable[[], object], repeat: int = 200) -> float:
    """Median wall time of `action()` in milliseconds, after one warm-up call."""
    action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@dataclass(frozen=True)
class TimedRun:
    """A run over many items: wall seconds for all, and seconds until the first result (0: not known)."""

    seconds: float
    first_result: float

    def rate(self, items: int) -> float:
        """Items per second over the whole run."""
        return items / self.seconds

    def steady_rate(self, items: int) -> float:
        """Items per second after the first result: the rate without start-up."""
        return (items - 1) / (self.seconds - self.first_result)


def spread(values: list[float]) -> dict:
    """Runs of one figure as the report keeps them: median, min, max and every run, in the order measured."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


def other_load(seconds: float = 1.0) -> float | None:
    """How many cores other processes keep busy while this one sleeps `seconds` (None off Linux):
    timings taken beside such work are inflated."""

    def busy_and_total() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    try:
        busy, total = busy_and_total()
        time.sleep(seconds)
        busy_after, total_after = busy_and_total()
    except (OSError, ValueError, IndexError):
        return None
    return (os.cpu_count() or 1) * (busy_after - busy) / max(1, total_after - total)
