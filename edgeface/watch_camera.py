"""The camera loop of `edgeface watch`: newest frame → faces → tracks → one log row per appearance.

A person who stays in view is one appearance (first and last seen, frames, the voted label), not
one row per frame; `per_frame` adds the frames as inputs too. The loop never blocks for long on
the camera, so systemd's watchdog is fed and signals are handled while the camera is down.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from edgeface.camera import CameraFailed, CameraSource, Frame, SourceFinished
from edgeface.clock import now
from edgeface.pipeline import ImageResult
from edgeface.tracking import Appearance, Tracker

if TYPE_CHECKING:
    from edgeface.watch import Daemon

log = logging.getLogger("edgeface.watch")

FRAME_WAIT = 0.5  # seconds next_frame may wait, which bounds how late a signal is noticed
TRACK_GAP = 2.0  # seconds without its face after which an appearance ends
TRACK_MISSES = 10  # ...or this many processed frames in a row without it
EXIT_CAMERA_FAILED = 1  # systemd's Restart=on-failure then starts a fresh process


def watch_camera(daemon: Daemon) -> int:
    """Runs the camera loop until SIGTERM, the end of a video file, or a capture that hung."""
    settings = daemon.settings
    camera = CameraSource(
        str(settings["camera.source"]),
        fps=float(settings["camera.fps"]),
        open_timeout=float(settings["camera.open_timeout"]),
        read_timeout=float(settings["camera.read_timeout"]),
        max_backoff=float(settings["camera.max_backoff"]),
    )
    name = f"camera:{camera.spec}"
    tracker = Tracker(max_missed=TRACK_MISSES, max_gap=TRACK_GAP)
    last_at = 0.0
    with camera:
        daemon.notifier.ready(f"watching {camera.spec}")
        log.info("watching %s with %s", camera.spec, daemon.pipeline.classifier.path)
        try:
            while not daemon.stop_requested():
                daemon.counts.camera = camera.status().state
                daemon.tick()
                try:
                    frame = camera.next_frame(FRAME_WAIT)
                except SourceFinished:
                    log.info("%s: no more frames", camera.spec)
                    break
                last_at = max(last_at, frame.captured if frame else time.monotonic())
                faces = _classify(daemon, frame, name) if frame else ()
                _record(daemon, tracker.update(faces, last_at), name)
        except CameraFailed as error:
            log.error("%s: %s; exiting so that the service restarts", camera.spec, error)
            return EXIT_CAMERA_FAILED
        finally:
            _record(daemon, tracker.finish(), name)
    return 0


def _classify(daemon: Daemon, frame: Frame, name: str) -> tuple:
    """The faces of one frame; with per_frame set, the frame is logged as an input too."""
    faces = daemon.pipeline.faces_in(frame.pixels)
    daemon.counts.frames += 1
    counts = daemon.counts
    counts.lag = frame.lag
    counts.max_lag = max(counts.max_lag, counts.lag)
    counts.skipped += frame.skipped
    if daemon.settings["camera.per_frame"]:
        moment = now()
        height, width = frame.pixels.shape[:2]
        result = ImageResult(f"{name}@{moment.wall}#{frame.number}", None, None, width, height, faces)
        daemon.log.record_batch([result], name, daemon.model_id, moment)
    return faces


def _record(daemon: Daemon, appearances: list[Appearance], name: str) -> None:
    if not appearances:
        return
    daemon.log.record_appearances(appearances, name, daemon.model_id)
    daemon.counts.appearances += len(appearances)
    for appearance in appearances:
        log.info(
            "%s: %s%s %.2f, %d frames over %.1f s",
            name, "unknown ~" if appearance.unknown else "", appearance.label, appearance.confidence,
            appearance.frames, appearance.last_seen - appearance.first_seen,
        )  # fmt: skip
