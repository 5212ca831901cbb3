"""The daemon's log through its faults: open, check, back off, open again, and say why, for every intake.

A log that fails while the daemon runs (locked by another writer, read-only, on a full disk,
deleted) is a fault to wait out, not a reason to exit: it is said once (and again when the reason
changes), the log is closed, and it is opened again after a wait that grows from FIRST_RETRY to
LAST_RETRY seconds. What could not be recorded meanwhile waits where the intake keeps it (`waiting`
says where). A log deleted or replaced under the daemon is noticed by `check()`, and a new one is
started in its place. A log that no wait can mend (`LogError.lasting`) stops the start instead.

Commits go through a `Recording`, so every sink is fed after the durable commit.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeface.recognizer import Recognizer
from edgeface.sinks import ModelInLog, Recording, Sink
from edgeface.store import LogError, LogReadOnly, ResultLog

logger = logging.getLogger("edgeface.watch")

# Another process's transaction is waited for this long, then the log counts as failing: the daemon's loop
# must not stall in SQLite for long, away from the watchdog and from SIGTERM.
BUSY_SECONDS = 2.0
FIRST_RETRY, LAST_RETRY = 1.0, 30.0  # seconds before opening a failing log again, doubling in between


@dataclass
class LogFault:
    """The log is failing: why, since when, how long the next wait is, and when to try again (monotonic seconds)."""

    reason: str
    since: float
    wait: float = FIRST_RETRY
    retry_at: float = 0.0


class ResilientLog:
    """The daemon's one log: a `Recording` while it works, a `LogFault` while it fails.

    db: the log file; durable: every commit reaches the disk before the daemon acts on it (moves files);
    sinks: fed after each commit; waiting: where unrecorded outcomes wait during a fault, for the journal;
    on_open: called with each newly opened log, after the model is registered (a LogError in it fails the open);
    on_fault: called once a fault has begun or changed, to tell systemd at once.
    """

    def __init__(
        self,
        db: Path,
        durable: bool,
        sinks: Sequence[Sink],
        waiting: str,
        on_open: Callable[[ResultLog], None],
        on_fault: Callable[[], None],
    ) -> None:
        self.db, self._durable, self._sinks, self._waiting = db, durable, sinks, waiting
        self._on_open, self._on_fault = on_open, on_fault
        self.recording: Recording | None = None  # None while the log fails
        self.fault: LogFault | None = None
        self.model: ModelInLog | None = None
        self._recognizer: Recognizer | None = None

    @property
    def log(self) -> ResultLog:
        """The open log; only while it works (`recording` is not None)."""
        return self.recording.log

    def start(self, recognizer: Recognizer) -> None:
        """Opens the log for the daemon's start. A lasting fault is raised, and so is a log this process may not
        write (a wrong --db or owner: a mistake to report, not a fault to wait out while systemd shows the
        service running); another fault (locked, a full disk) begins a fault."""
        self._recognizer = recognizer
        try:
            self._open()
        except LogError as error:
            if error.lasting or isinstance(error, LogReadOnly):
                raise
            self.failed(error)

    def use_model(self, recognizer: Recognizer) -> None:
        """Outcomes are the model `recognizer`'s from now on (a reload); registered now, or when the log works again."""
        self._recognizer = recognizer
        if self.recording is not None:
            self.model = self.recording.use_model(recognizer.sha256, str(recognizer.path), recognizer.labels)

    def check(self) -> None:
        """Raises LogGone when the file at the log's path is no longer the one open: its commits would vanish."""
        self.recording.check()

    def failed(self, error: LogError) -> None:
        """Starts (or continues) a fault: says so once, or again when the reason changes, closes the log, and
        plans the next try after the fault's current wait."""
        if self.fault is None or self.fault.reason != error.reason:
            logger.error("the log %s is failing: %s; %s, and the log is opened again in %.0f s, then less often "
                         "(every %.0f s at most)", self.db, error.reason, self._waiting,
                         self.fault.wait if self.fault else FIRST_RETRY, LAST_RETRY)  # fmt: skip
        if self.fault is None:
            self.fault = LogFault(error.reason, time.monotonic())
        self.fault.reason = error.reason
        self.fault.retry_at = time.monotonic() + self.fault.wait
        self.close()
        self._on_fault()

    def seconds_to_retry(self) -> float:
        """How long until the failing log is due to be opened again (0 when it is due)."""
        return max(0.0, self.fault.retry_at - time.monotonic())

    def reopen(self, then: str) -> bool:
        """Opens the failing log again now (a new, empty log when the old one is gone) and ends the fault,
        saying `then` (what happens next); else the next try waits twice as long. Returns whether it works."""
        self.fault.wait = min(2 * self.fault.wait, LAST_RETRY)
        existed = self.db.exists()
        try:
            self._open()
        except LogError as error:
            self.failed(error)
            return False
        if not existed:
            logger.warning("the log %s did not exist: started a new, empty one there", self.db)
        logger.warning("the log %s works again after %.0f s; %s", self.db, time.monotonic() - self.fault.since, then)
        self.fault = None
        return True

    def close(self) -> None:
        if self.recording is not None:
            with contextlib.suppress(LogError):
                self.log.close()
            self.recording = None

    def _open(self) -> None:
        """Opens the log, registers the model, proves that a write gets through, then calls `on_open`."""
        self.recording = Recording(ResultLog(self.db, durable=self._durable, busy_seconds=BUSY_SECONDS), self._sinks)
        try:
            self.use_model(self._recognizer)
            self.log.check_writable()
            self._on_open(self.log)
        except LogError:
            self.close()
            raise
