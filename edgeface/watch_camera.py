"""The camera loop of `edgeface watch`: newest frame → faces → tracks → one log row per appearance.

A person who stays in view is one appearance (first and last seen, frames, the voted label), not
one row per frame; `per_frame` adds the frames as inputs too. The loop never blocks for long on
the camera, so systemd's watchdog is fed and signals are handled while the camera is down.

A log that fails (locked, read-only, a full disk, deleted) does not stop the camera: frames are
still classified and tracked, and each appearance is written to the journal when it ends. The
appearances that could not be recorded wait in memory (the latest MAX_KEPT) and are recorded once
the log works again; the log is opened again after the daemon's growing wait, tried between two
frames rather than slept out. Per-frame rows, optional detail, are dropped meanwhile and counted.
A log deleted or replaced under the daemon is noticed between frames and after each write, so
what was committed to the lost file is recorded again in the new one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgeface.camera import CameraFailed, CameraSource, Frame, SourceFinished
from edgeface.clock import Moment, now
from edgeface.results import Appearance, FaceResult, ImageResult, shown_label
from edgeface.store import LogError, ResultLog
from edgeface.tracking import Tracker

if TYPE_CHECKING:
    from edgeface.watch import Daemon

log = logging.getLogger("edgeface.watch")

FRAME_WAIT = 0.5  # seconds next_frame may wait, which bounds how late a signal is noticed
TRACK_GAP = 2.0  # seconds without its face after which an appearance ends
TRACK_MISSES = 10  # ...or this many processed frames in a row without it
EXIT_CAMERA_FAILED = 1  # systemd's Restart=on-failure then starts a fresh process
MAX_KEPT = 1000  # appearances kept in memory while the log fails: about 0.5 kB each, so 0.5 MB at most


def watch_camera(daemon: Daemon) -> int:
    """Runs the camera loop until SIGTERM, the end of a video file, or a capture that hung."""
    settings = daemon.settings.camera
    camera = CameraSource(
        settings.source,
        fps=settings.fps,
        open_timeout=settings.open_timeout,
        read_timeout=settings.read_timeout,
        max_backoff=settings.max_backoff,
    )
    name = f"camera:{camera.spec}"
    tracker = Tracker(max_missed=TRACK_MISSES, max_gap=TRACK_GAP)
    recorder = Recorder(daemon, name)
    last_at = 0.0
    with camera:
        daemon.notifier.ready(f"watching {camera.spec}")
        log.info("watching %s with %s", camera.spec, daemon.pipeline.recognizer.path)
        try:
            while not daemon.stop_requested():
                daemon.counts.camera = camera.status().state
                recorder.tick()
                try:
                    frame = camera.next_frame(FRAME_WAIT)
                except SourceFinished:
                    log.info("%s: no more frames", camera.spec)
                    break
                last_at = max(last_at, frame.captured if frame else time.monotonic())
                faces = _classify(daemon, recorder, frame) if frame else ()
                recorder.add(tracker.update(faces, last_at))
        except CameraFailed as error:
            log.error("%s: %s; exiting so that the service restarts", camera.spec, error)
            return EXIT_CAMERA_FAILED
        finally:
            recorder.close(tracker.finish())
    return 0


def _classify(daemon: Daemon, recorder: Recorder, frame: Frame) -> tuple[FaceResult, ...]:
    """The faces of one frame; with per_frame set, the frame is logged as an input too."""
    faces = daemon.pipeline.faces_in(frame.pixels)
    daemon.counts.frames += 1
    counts = daemon.counts
    counts.lag = frame.lag
    counts.max_lag = max(counts.max_lag, counts.lag)
    counts.skipped += frame.skipped
    if daemon.settings.camera.per_frame:
        moment = now()
        height, width = frame.pixels.shape[:2]
        result = ImageResult(f"{recorder.name}@{moment.wall}#{frame.number}", None, None, width, height, faces)
        recorder.add_frame(result, moment)
    return faces


class Recorder:
    """Writes the camera's appearances (and per-frame rows) to the daemon's log, and carries them through the
    log's faults without holding the camera loop up (see the module docstring).

    The fault itself is the daemon's: `Daemon._log_failed` reports it and closes the log, and the retries follow
    its growing wait.
    """

    def __init__(self, daemon: Daemon, name: str) -> None:
        self.daemon = daemon
        self.name = name
        self.kept: deque[Appearance] = deque(maxlen=MAX_KEPT)  # ended, not recorded yet
        self.lost = 0  # appearances pushed out of `kept` by newer ones during the current fault
        self.rows_dropped = 0  # per-frame rows not logged during the current fault
        self._retry_at = time.monotonic() + daemon.fault.wait if daemon.fault else 0.0  # next try at a failing log

    def tick(self) -> None:
        """Called between frames: the daemon's housekeeping; opens a failing log again once its wait is over
        (trying, not sleeping: the camera is read meanwhile); notices a log deleted or replaced under the daemon."""
        daemon = self.daemon
        try:
            daemon.tick()  # retention and a reload's model registration write to the log too
            if daemon.log is None and time.monotonic() >= self._retry_at:
                self._reopen()
            if daemon.log is not None:
                daemon._check_log()
        except LogError as error:
            self._failed(error)

    def add(self, ended: list[Appearance]) -> None:
        """Takes the appearances that just ended (each said in the journal at once, whatever the log does), and
        records them with any that wait from a fault; they wait in memory while the log fails."""
        for appearance in ended:
            log.info(
                "%s: %s %.2f, %d frames over %.1f s",
                self.name, shown_label(appearance.label, appearance.unknown), appearance.confidence,
                appearance.frames, appearance.last_seen - appearance.first_seen,
            )  # fmt: skip
            if len(self.kept) == MAX_KEPT:
                self.lost += 1  # the oldest gives way
            self.kept.append(appearance)
        if self.kept and self._write(self._record_kept):
            self.daemon.counts.appearances += len(self.kept)
            self.kept.clear()

    def add_frame(self, result: ImageResult, moment: Moment) -> None:
        """Logs one frame as an input; dropped, and counted, while the log fails."""
        daemon = self.daemon
        if not self._write(lambda result_log: result_log.record_batch([result], self.name, daemon.model_id, moment)):
            self.rows_dropped += 1

    def close(self, ended: list[Appearance]) -> None:
        """At the end of the watch: records the last appearances, trying a failing log once more at once; what
        still cannot be recorded is said to be lost."""
        self._retry_at = 0.0
        self.tick()
        self.add(ended)
        if self.kept or self.lost or self.rows_dropped:
            lost = _appearances(len(self.kept) + self.lost)
            log.error("the log %s still fails: %s that ended while it failed are lost (they are only in this "
                      "journal)%s", self.daemon.db, lost, self._rows_text())  # fmt: skip

    def _record_kept(self, result_log: ResultLog) -> None:
        """Records every appearance that waits, in one transaction."""
        result_log.record_appearances(list(self.kept), self.name, self.daemon.model_id)

    def _write(self, write: Callable[[ResultLog], None]) -> bool:
        """Runs `write` on the log and checks that the log is still the file at its path (a commit to a deleted
        log is lost with it); False, with the fault handled, when the log is failing or fails now."""
        daemon = self.daemon
        if daemon.log is None:
            return False
        try:
            write(daemon.log)
            daemon._check_log()
        except LogError as error:
            self._failed(error)
            return False
        return True

    def _failed(self, error: Exception) -> None:
        """Hands a log fault to the daemon and plans the next try after the daemon's current wait."""
        self.daemon._log_failed(error)
        self._retry_at = time.monotonic() + self.daemon.fault.wait

    def _reopen(self) -> None:
        """Opens the failing log again now; the next try, if this one fails, waits twice as long."""
        lost = f"; {self.lost} older ones did not fit in memory and are lost (they are only in this journal)"
        then = f"recording the {_appearances(len(self.kept))} that ended meanwhile{lost if self.lost else ''}"
        if self.daemon.reopen_log_now(then + self._rows_text()):
            self.lost = self.rows_dropped = 0
        else:
            self._retry_at = time.monotonic() + self.daemon.fault.wait

    def _rows_text(self) -> str:
        """The per-frame rows dropped in this fault, for the line that ends it."""
        return f"; {self.rows_dropped} per-frame rows were not logged" if self.rows_dropped else ""


def _appearances(count: int) -> str:
    """'1 appearance', '2 appearances': counts in log lines read as English."""
    return f"{count} appearance{'' if count == 1 else 's'}"
