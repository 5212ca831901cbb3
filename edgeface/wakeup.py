"""A wait that a signal handler or another thread can cut short: a self-pipe.

Python resumes a `queue.get(timeout=…)` or a `time.sleep` after a signal handler has run, so a daemon would notice
SIGTERM only when its wait ends. Writing a byte to a pipe is safe from a signal handler (no lock is taken), and a
`select` on that pipe returns as soon as the byte is there.
"""

from __future__ import annotations

import os
import select


class Wakeup:
    """`wait(timeout)` returns early once `wake()` has been called since the last wait."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        """Ends the current or the next wait; safe in a signal handler and from any thread."""
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wakes already

    def wait(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds; True when woken."""
        ready, _, _ = select.select([self._read], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass  # drained
        return True
