"""Runs one command in a fresh process and measures it whole: wall time, when its first line came out, and the
peak memory of all its processes.

Peak memory (all processes) is the sum over every process of the command's tree (itself, its workers, their
helpers) of that process's own peak resident set (`VmHWM` in /proc/PID/status, a high-water mark the kernel keeps),
read every SAMPLE_INTERVAL while the process lives. Pages two processes share (libraries, a forked parent's memory)
count once in each, as `ps` shows them; since the peaks need not coincide, the sum is an upper bound on the memory
the command held at any one moment, and it is what a box must have free to run the command without swapping. A
process that lives less than SAMPLE_INTERVAL may be missed, and growth in a process's last SAMPLE_INTERVAL too.
Linux only.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from timing import TimedRun

SAMPLE_INTERVAL = 0.02  # seconds between looks at /proc


@dataclass(frozen=True)
class ProcessRun(TimedRun):
    """seconds: from start to exit; first_result: seconds until the first line of stdout (0: no output); lines:
    lines of stdout; peak_mib: the sum of every process's own peak resident set, MiB; processes: how many."""

    lines: int
    peak_mib: float
    processes: int


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from /proc's children lists (processes that end meanwhile are left out)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def peak_kib(pid: int) -> int | None:
    """The process's own peak resident set so far (VmHWM), KiB; None when it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class _LineClock(threading.Thread):
    """Counts the lines of a child's stdout and notes when the first came."""

    def __init__(self, stream, started: float) -> None:
        super().__init__(name="report-stdout", daemon=True)
        self.stream, self.started = stream, started
        self.first: float | None = None
        self.lines = 0

    def run(self) -> None:
        for _ in self.stream:
            if self.first is None:
                self.first = time.monotonic() - self.started
            self.lines += 1


def measured_run(command: list[str], timeout: float = 3600) -> ProcessRun:
    """Runs `command` to its end, sampling the memory of its process tree; raises RuntimeError with the end of its
    stderr when it exits with other than 0."""
    peaks: dict[int, int] = {}
    with tempfile.TemporaryFile("w+") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        clock = _LineClock(process.stdout, started)
        clock.start()
        while process.poll() is None:
            for pid in descendants(process.pid):
                peaks[pid] = max(peaks.get(pid, 0), peak_kib(pid) or 0)
            if time.monotonic() - started > timeout:
                process.kill()
            time.sleep(SAMPLE_INTERVAL)
        seconds = time.monotonic() - started
        clock.join()
        process.stdout.close()
        if process.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"{' '.join(command[:4])} … ended with {process.returncode}:\n{stderr.read()[-2000:]}")
    return ProcessRun(seconds, clock.first or 0.0, clock.lines, sum(peaks.values()) / 1024, len(peaks))
