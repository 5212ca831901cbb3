"""SIGHUP held from the first instant of the `edgeface` command, until the command knows what it means.

Loading the runtime (OpenCV, LiteRT, the model) takes most of a second on a Pi, and a SIGHUP then
(`systemctl reload` right after a start) would kill the daemon with its default action. `hold()`
runs before those imports and only notes the signal; the daemon then takes a noted SIGHUP as a
reload (`take()`), and every other command gets the default action back (`release()`), so closing
a terminal still stops a scan.
"""

from __future__ import annotations

import os
import signal

_noted = False


def _note(number: int, frame: object) -> None:
    global _noted
    _noted = True


def hold() -> None:
    """From now on a SIGHUP is only noted."""
    signal.signal(signal.SIGHUP, _note)


def take() -> bool:
    """Whether a SIGHUP was noted since `hold()` (and forget it): for the daemon, which reloads."""
    global _noted
    noted, _noted = _noted, False
    return noted


def release() -> None:
    """SIGHUP's default action again, and a noted one delivered now: for every command but the daemon."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if take():
        os.kill(os.getpid(), signal.SIGHUP)
