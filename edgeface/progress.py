"""Progress on long work: a counter that redraws itself on a terminal and says nothing otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`step()` after each item; `done()` at the end. Writes to stderr only when it is a terminal,
    at most ten times a second, so scripts and logs stay clean."""

    def __init__(self, total: int, what: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._active = self._stream.isatty()
        self._total, self._what = total, what
        self._count, self._drawn = 0, 0.0

    def step(self, amount: int = 1) -> None:
        self._count += amount
        now = time.monotonic()
        if self._active and (now - self._drawn >= 0.1 or self._count == self._total):
            self._drawn = now
            self._stream.write(f"\r{self._what}: {self._count}/{self._total}")
            self._stream.flush()

    def done(self) -> None:
        if self._active and self._count:
            self._stream.write("\n")
            self._stream.flush()
