"""Log lines for journald that a flood cannot drown: at most a burst, then a steady rate.

journald drops a service's messages above its rate limit (by default 10,000 per 30 s), and
then the lines that matter are lost with the flood. A folder filling with broken files must
not do that, so the daemon's handler lets `burst` lines through, then about `per_second`, and
says how many it held back when it speaks again.
"""

from __future__ import annotations

import logging
import time


class Throttle(logging.Filter):
    """A token bucket over log records; errors and warnings count alike."""

    def __init__(self, burst: int = 50, per_second: float = 5.0) -> None:
        super().__init__()
        self._burst, self._rate = burst, per_second
        self._tokens, self._stamp = float(burst), time.monotonic()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            self.suppressed += 1
            return False
        self._tokens -= 1
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} earlier lines suppressed by the log rate limit)"
            self.suppressed = 0
        return True
