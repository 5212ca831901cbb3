"""Files that could not be read or decoded while a writer may still be adding to them.

A close event says that a writer closed the file, not that it is done: `cat part >> photo.jpg` in rounds, or an
FTP upload that resumes, closes it after every piece, and a piece is a truncated image. So a failure counts only
once the file has stayed exactly as it was (the same inode, size and modification time) for `seconds` from the
first look that failed; until then the file is held and looked at again, and no piece of it becomes an outcome.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

from edgeface.paths import Stamp

HELD_AT_MOST = 1024  # files held at once; past that a failure is recorded at once, so memory stays bounded


class _Held(NamedTuple):
    stamp: Stamp  # the file as it was when it first failed so
    since: float  # monotonic time of that look
    due: float  # when to look again (inf once handed out by `due`)


class Unsettled:
    """The failing files held for another look (see the module docstring)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._held: dict[str, _Held] = {}

    def hold(self, path: str, stamp: Stamp | None) -> bool:
        """Whether the failure of `path`, as the file was at `stamp`, waits for another look instead of being
        recorded now. False once the file failed unchanged for `seconds`, when it is gone (`stamp` None), or when
        HELD_AT_MOST others are held."""
        now = time.monotonic()
        held = self._held.pop(path, None)
        if stamp is None:
            return False
        since = held.since if held is not None and held.stamp == stamp else now
        if now - since >= self.seconds or len(self._held) >= HELD_AT_MOST:
            return False
        self._held[path] = _Held(stamp, since, since + self.seconds)
        return True

    def due(self) -> list[str]:
        """The held files whose next look is due, each once per hold."""
        now = time.monotonic()
        paths = [path for path, held in self._held.items() if held.due <= now]
        for path in paths:
            self._held[path] = self._held[path]._replace(due=math.inf)
        return paths

    def settled(self, path: str) -> None:
        """`path` has an outcome, or is no input any more: nothing to remember of it."""
        self._held.pop(path, None)
