"""The camera intake of `edgeface watch`: newest frame → faces → tracks → one log row per appearance.

A person who stays in view is one appearance (first and last seen, frames, the voted label), not
one row per frame; `per_frame` adds the frames as inputs too. The loop never blocks for long on
the camera, so systemd's watchdog is fed and signals are handled while the camera is down.

A log that fails (locked, read-only, a full disk, deleted) does not stop the camera: frames are
still classified and tracked, and each appearance is written to the journal when it ends. The
appearances that could not be recorded wait in memory (the latest MAX_KEPT) and are recorded once
the log works again; the log is opened again after the resilient log's growing wait, tried between
two frames rather than slept out. Per-frame rows, optional detail, are dropped meanwhile and counted.
A log deleted or replaced under the daemon is noticed between frames and after each write, so
what was committed to the lost file is recorded again in the new one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from edgeface.camera import CameraFailed, CameraSource, Frame, SourceFinished
from edgeface.clock import Moment, now
from edgeface.geometry import Box
from edgeface.intake import IDLE_WAIT, Host
from edgeface.pipeline import Pipeline
from edgeface.results import Appearance, FaceResult, ImageResult
from edgeface.settings import CameraSettings
from edgeface.sinks import Recording
from edgeface.store import LogError
from edgeface.tracking import Tracker

logger = logging.getLogger("edgeface.watch")

TRACK_GAP = 2.0  # seconds without its face after which an appearance ends
TRACK_MISSES = 10  # ...or this many processed frames in a row without it
SETTLE_VOTES = 3  # frames a face is named in before camera.recheck spaces its naming out
EXIT_CAMERA_FAILED = 1  # systemd's Restart=on-failure then starts a fresh process
MAX_KEPT = 1000  # appearances kept in memory while the log fails: about 0.5 kB each, so 0.5 MB at most


class CameraIntake:
    """Frames from one camera (see the module docstring)."""

    waiting = "appearances wait in memory"
    durable = False  # nothing is acted on after a commit

    def __init__(self, settings: CameraSettings) -> None:
        self.camera = CameraSource(settings.source, fps=settings.fps, open_timeout=settings.open_timeout,
                                   read_timeout=settings.read_timeout, max_backoff=settings.max_backoff)  # fmt: skip
        self.name = f"camera:{self.camera.spec}"

    def wake(self) -> None:
        """Nothing to cut short: the loop waits at most IDLE_WAIT for a frame, far less while frames come."""

    def run(self, host: Host) -> int:
        """Runs the camera loop until SIGTERM, the end of a video file, or a capture that hung."""
        tracker = camera_tracker(host.settings.camera.recheck)
        recorder = Recorder(host, self.name)
        last_at = 0.0
        with self.camera as camera:
            host.ready(f"watching {camera.spec}")
            logger.info("watching %s with %s", camera.spec, host.pipeline.recognizer.path)
            try:
                while not host.stopping:
                    host.counts.camera = camera.status().state
                    recorder.tick()
                    try:
                        frame = camera.next_frame(IDLE_WAIT)
                    except SourceFinished:
                        logger.info("%s: no more frames", camera.spec)
                        break
                    last_at = max(last_at, frame.captured if frame else time.monotonic())
                    faces, seen = self._classify(host, recorder, frame, tracker, last_at) if frame else ((), [])
                    recorder.add(tracker.update(faces, last_at, seen))
            except CameraFailed as error:
                logger.error("%s: %s; exiting so that the service restarts", camera.spec, error)
                return EXIT_CAMERA_FAILED
            finally:
                recorder.close(tracker.finish())
        return 0

    def _classify(self, host: Host, recorder: Recorder, frame: Frame, tracker: Tracker, at: float
                  ) -> tuple[tuple[FaceResult, ...], list[Box]]:  # fmt: skip
        """The faces of one frame that need naming, named, and the boxes of those the tracker has named enough
        lately (`Tracker.settled`); with per_frame set, every face is named and the frame logged as an input too."""
        per_frame = host.settings.camera.per_frame  # a frame's row names all its faces
        faces, followed = faces_of_frame(host.pipeline, tracker, frame.pixels, at, name_all=per_frame)
        counts = host.counts
        counts.frames += 1
        counts.named += len(faces)
        counts.followed += len(followed)
        counts.lag = frame.lag
        counts.max_lag = max(counts.max_lag, counts.lag)
        counts.skipped += frame.skipped
        if per_frame:
            moment = now()
            height, width = frame.pixels.shape[:2]
            result = ImageResult(f"{self.name}@{moment.wall}#{frame.number}", None, None, width, height, faces)
            recorder.add_frame(result, moment)
        return faces, followed


def camera_tracker(recheck: float) -> Tracker:
    """The tracker a camera's faces are followed with: appearances end after TRACK_GAP seconds or TRACK_MISSES
    frames without their face; a face is named in SETTLE_VOTES frames, then every `recheck` seconds."""
    return Tracker(max_missed=TRACK_MISSES, max_gap=TRACK_GAP, settle_votes=SETTLE_VOTES, recheck=recheck)


def faces_of_frame(pipeline: Pipeline, tracker: Tracker, pixels: np.ndarray, at: float, name_all: bool = False
                   ) -> tuple[tuple[FaceResult, ...], list[Box]]:  # fmt: skip
    """A frame's faces found, and named unless the tracker has named them enough lately (`Tracker.settled`): the
    named faces and the boxes of the others, for `Tracker.update`. `name_all` names every face."""
    boxes = pipeline.detector.detect(pixels)
    settled = [False] * len(boxes) if name_all else tracker.settled(boxes, at)
    faces = pipeline.name_faces(pixels, [box for box, done in zip(boxes, settled) if not done])
    return faces, [box for box, done in zip(boxes, settled) if done]


class Recorder:
    """Writes the camera's appearances (and per-frame rows) to the daemon's log, and carries them through the
    log's faults without holding the camera loop up (see the module docstring). The fault itself, its journal
    lines and its growing wait are the resilient log's."""

    def __init__(self, host: Host, name: str) -> None:
        self.host = host
        self.name = name
        self.kept: deque[Appearance] = deque(maxlen=MAX_KEPT)  # ended, not recorded yet
        self.lost = 0  # appearances pushed out of `kept` by newer ones during the current fault
        self.rows_dropped = 0  # per-frame rows not logged during the current fault

    def tick(self) -> None:
        """Called between frames: the daemon's housekeeping; opens a failing log again once its wait is over
        (trying, not sleeping: the camera is read meanwhile); notices a log deleted or replaced under the daemon."""
        log = self.host.log
        try:
            self.host.tick()  # retention and a reload's model registration write to the log too
            if log.fault and not log.seconds_to_retry():
                self._reopen()
            if not log.fault:
                log.check()
        except LogError as error:
            log.failed(error)

    def add(self, ended: list[Appearance]) -> None:
        """Takes the appearances that just ended (each said in the journal at once, whatever the log does), and
        records them with any that wait from a fault; they wait in memory while the log fails."""
        for appearance in ended:
            logger.info(
                "%s: %s %.2f, %d frames over %.1f s",
                self.name, appearance.shown, appearance.confidence,
                appearance.frames, appearance.last_seen - appearance.first_seen,
            )  # fmt: skip
            if len(self.kept) == MAX_KEPT:
                self.lost += 1  # the oldest gives way
            self.kept.append(appearance)
        if self.kept and self._write(lambda recording: recording.appearances(list(self.kept), self.name, self.host.log.model)):
            self.host.counts.appearances += len(self.kept)
            self.kept.clear()

    def add_frame(self, result: ImageResult, moment: Moment) -> None:
        """Logs one frame as an input; dropped, and counted, while the log fails."""
        if not self._write(lambda recording: recording.images([result], self.name, self.host.log.model, moment)):
            self.rows_dropped += 1

    def close(self, ended: list[Appearance]) -> None:
        """At the end of the watch: records the last appearances, trying a failing log once more at once; what
        still cannot be recorded is said to be lost."""
        if self.host.log.fault:
            self._reopen()
        self.add(ended)
        if self.kept or self.lost or self.rows_dropped:
            lost = _appearances(len(self.kept) + self.lost)
            logger.error("the log %s still fails: %s that ended while it failed are lost (they are only in this "
                         "journal)%s", self.host.log.db, lost, self._rows_text())  # fmt: skip

    def _write(self, write: Callable[[Recording], object]) -> bool:
        """Runs `write` on the log's recording (which checks the log is still the file at its path); False, with
        the fault handled, when the log is failing or fails now."""
        log = self.host.log
        if log.fault:
            return False
        try:
            write(log.recording)
        except LogError as error:
            log.failed(error)
            return False
        return True

    def _reopen(self) -> None:
        """Opens the failing log again now; the next try, if this one fails, waits twice as long."""
        lost = f"; {self.lost} older ones did not fit in memory and are lost (they are only in this journal)"
        then = f"recording the {_appearances(len(self.kept))} that ended meanwhile{lost if self.lost else ''}"
        if self.host.log.reopen(then + self._rows_text()):
            self.lost = self.rows_dropped = 0

    def _rows_text(self) -> str:
        """The per-frame rows dropped in this fault, for the line that ends it."""
        return f"; {self.rows_dropped} per-frame rows were not logged" if self.rows_dropped else ""


def _appearances(count: int) -> str:
    """'1 appearance', '2 appearances': counts in log lines read as English."""
    return f"{count} appearance{'' if count == 1 else 's'}"
