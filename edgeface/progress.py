"""Progress on long work: a line that redraws itself on a terminal and says nothing otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_SECONDS = 0.1


class Progress:
    """`start(total)` once the amount of work is known, `step()` after each item, `done()` at the end.

    Writes to `stream` (stderr) only when it is a terminal, at most ten times a second, so scripts
    and logs stay clean. The line shows the count, the rate and the time left once there is a rate.
    `clear()` wipes the line so that other output can be printed on the same terminal.
    """

    def __init__(self, what: str, total: int = 0, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self.active = self._stream.isatty()
        self._what = what
        self._count, self._drawn, self._shown = 0, 0.0, False
        self.start(total)

    def start(self, total: int) -> None:
        self._total, self._began = total, time.monotonic()

    def step(self, amount: int = 1) -> None:
        self._count += amount
        now = time.monotonic()
        if self.active and (now - self._drawn >= REDRAW_SECONDS or self._count == self._total):
            self._drawn, self._shown = now, True
            self._stream.write(f"\r\033[K{self._line(now - self._began)}")
            self._stream.flush()

    def _line(self, elapsed: float) -> str:
        line = f"{self._what}: {self._count}/{self._total}" if self._total else f"{self._what}: {self._count}"
        rate = self._count / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            line += f", {rate:.1f}/s"
            if self._total > self._count:
                line += f", {(self._total - self._count) / rate:.0f} s left"
        return line

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._shown, self._drawn = False, 0.0  # redraw at the next step

    def done(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False
