"""What the daemon's lifecycle core and its intakes (a folder, a camera) agree on.

The core (`edgeface.watch`) owns signals, systemd, reloads, retention and the log; an intake owns
one kind of source and its loop. An intake sees the core only as a `Host`, so neither imports the
other's module and nothing calls across them but this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edgeface.crops import CropStore
from edgeface.pipeline import Pipeline
from edgeface.resilient_log import ResilientLog
from edgeface.settings import WatchSettings

IDLE_WAIT = 0.5  # seconds an intake waits for its source at most; also bounds how late a signal is noticed


@dataclass
class Counts:
    """What the daemon did since it started, for STATUS= and the journal."""

    done: int = 0
    failed: int = 0
    already: int = 0
    frames: int = 0
    appearances: int = 0
    lag: float = 0.0  # seconds from a frame's capture to its classification, the latest frame's
    max_lag: float = 0.0
    skipped: int = 0  # frames the camera delivered that were too old to classify
    named: int = 0  # faces named in the camera's frames
    followed: int = 0  # faces in them that moved their track unnamed (camera.recheck)
    camera: str = ""  # the camera's state; empty for a folder

    def line(self, pending: int | None) -> str:
        """The counts as one line; `pending` is None while the log cannot be read."""
        if self.camera:
            return (
                f"camera {self.camera}, {self.frames} frames classified, {self.skipped} skipped, "
                f"{self.appearances} appearances, {self.named} faces named, {self.followed} followed unnamed, "
                f"lag {self.lag:.3f} s (max {self.max_lag:.3f} s)"
            )
        waiting = "" if pending is None else f", {pending} pending"
        return f"{self.done} done, {self.failed} failed, {self.already} already logged{waiting}"


class Host(Protocol):
    """The daemon's core as an intake uses it. `settings`, `pipeline` and `crops` change on a reload: read them
    afresh, do not keep them."""

    settings: WatchSettings
    pipeline: Pipeline
    crops: CropStore | None  # None unless save_crops
    counts: Counts
    log: ResilientLog

    @property
    def stopping(self) -> bool:
        """SIGTERM or SIGINT came: finish the item in hand and return."""

    def tick(self) -> None:
        """Housekeeping (watchdog, status, retention, enrolments, a requested reload): call it often."""

    def pause(self, seconds: float) -> None:
        """Sleeps `seconds` (less if SIGTERM comes), ticking all the while."""

    def ready(self, status: str) -> None:
        """The intake watches its source: tells systemd READY=1 with `status`."""


class Intake(Protocol):
    """One source of inputs for the daemon."""

    name: str  # the source as the log records it ("folder:/abs/path", "camera:rtsp://…")
    waiting: str  # where outcomes that cannot be recorded wait during a log fault, said in the journal
    durable: bool  # whether the intake acts on each commit (moves files), so commits must reach the disk first

    def run(self, host: Host) -> int:
        """Takes inputs until the host is stopping (or the source ends); returns the exit code."""

    def wake(self) -> None:
        """Cuts the intake's wait for its source short; called from a signal handler, so it takes no lock."""
