"""`edgeface watch`: the daemon's lifecycle core, around one intake (a folder or a camera).

The core owns what every source shares: the settings and the model, systemd ($NOTIFY_SOCKET: READY=1
once the model is loaded and has passed its self-test, WATCHDOG=1 from `tick`, STATUS= with counts
as they change, RELOADING=1, STOPPING=1), signals (SIGTERM and SIGINT stop after the item in hand,
SIGHUP reloads the config and the model, keeping the old ones if the new ones fail), retention, the
people enrolled in the log, and the log itself through its faults (`ResilientLog`). The intake
(`intake_folder`, `intake_camera`) owns its source and its loop, and sees the core only as the
`Host` of `edgeface.intake`.

A log that no wait can mend (damaged, no SQLite file, another program's, or from a newer edgeface)
and a log this process may not write stop the start, with exit code 2; any other fault of the log,
and a log that becomes read-only later, is waited out (see `edgeface.resilient_log`).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import cv2

from edgeface import hangup
from edgeface.camera import parse_source
from edgeface.clock import clock_synchronized, log_time, now, wall_clock_trustworthy
from edgeface.crops import CropStore
from edgeface.declared import value_at, with_values
from edgeface.intake import IDLE_WAIT, Counts, Intake
from edgeface.intake_camera import CameraIntake
from edgeface.intake_folder import FolderIntake
from edgeface.model import ModelError
from edgeface.notify import SystemdNotifier, watchdog_interval
from edgeface.pipeline import Pipeline
from edgeface.resilient_log import ResilientLog
from edgeface.selftest import run_self_test
from edgeface.settings import KEYS, ConfigError, WatchSettings, load_settings
from edgeface.sinks import Sink
from edgeface.store import LogError, ResultLog, default_path
from edgeface.throttle import Throttle
from edgeface.workers import PipelineRecipe

logger = logging.getLogger("edgeface.watch")

STATUS_SECONDS = 5.0  # the status is said at least this often (the pending count changes by itself too)
STATUS_MIN_SECONDS = 1.0  # and when the counts change, at most this often (a camera's change with every frame)
RETENTION_SECONDS = 3600.0
GALLERY_SECONDS = 1.0  # how often the log is asked whether someone was enrolled or forgotten
# Settings a reload cannot change: the log, the source the intake opened and the broker the publisher joined
# (a reload that changes one says so and keeps the running value). Every other key applies from the reload on.
RESTART_ONLY = tuple(
    key for key in KEYS
    if key == "db" or key.startswith(("folder.", "mqtt.")) or (key.startswith("camera.") and key != "camera.per_frame")
)


def build_pipeline(settings: WatchSettings) -> Pipeline:
    """The model and detector that `settings` name, self-tested; raises on any problem."""
    cv2.setNumThreads(settings.threads)  # the detector's threads, like LiteRT's
    recipe = PipelineRecipe(model=settings.model, threads=settings.threads, detector=settings.detector)
    pipeline = recipe.build()
    run_self_test(pipeline.recognizer)
    return pipeline


def make_intake(settings: WatchSettings, db: Path) -> Intake:
    """The intake for the source the settings name; ConfigError when it cannot be one."""
    if settings.folder.path:
        folder = Path(settings.folder.path)
        if not folder.is_dir():
            raise ConfigError(f"the folder to watch, {folder}, does not exist or is not a folder")
        for key in ("move_done", "move_failed"):
            target = getattr(settings.folder, key)
            if target and folder.resolve().is_relative_to(Path(target).resolve()):
                raise ConfigError(f"folder.{key} {target} is the watched folder or holds it: every file moved there "
                                  "would be taken again; give a folder of its own")  # fmt: skip
        return FolderIntake(settings.folder, kept_out=(str(crops_folder(db)),))
    try:
        parse_source(settings.camera.source)
    except ValueError as error:
        raise ConfigError(f"camera.source: {error}") from None
    return CameraIntake(settings.camera)


class Daemon:
    """One running `edgeface watch`: the `Host` its intake runs in (see the module docstring)."""

    def __init__(self, config_file: Path | None, flags: dict[str, object], sinks: Sequence[Sink] = ()) -> None:
        self._config_file, self._flags = config_file, flags
        self.settings = load_settings(config_file, flags)
        db = Path(self.settings.db) if self.settings.db else default_path()
        self.intake = make_intake(self.settings, db)
        _set_level(self.settings)
        self.pipeline = build_pipeline(self.settings)
        self.crops = self._crop_store(db)
        self.notifier = SystemdNotifier()
        self.counts = Counts()
        self._stop = self._reload = False
        self._next_ping = self._next_retention = self._next_gallery = 0.0
        self._status_said_at, self._said_counts = float("-inf"), Counts()
        self._gallery_version: int | None = None
        interval = watchdog_interval()
        self._ping_every = interval / 2 if interval else None
        self.log = ResilientLog(db, self.intake.durable, sinks, self.intake.waiting, self._log_opened, self._say_status)
        self.log.start(self.pipeline.recognizer)

    # -- the Host an intake sees -----------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop

    def ready(self, status: str) -> None:
        self.notifier.ready(status)

    def tick(self) -> None:
        """Watchdog ping, status, retention, enrolments and a requested reload. A LogError from retention or a
        reload's model registration goes to the intake, which hands it to the resilient log."""
        at = time.monotonic()
        if self._ping_every and at >= self._next_ping:
            self.notifier.watchdog()
            self._next_ping = at + self._ping_every
        if self._status_due(at):
            self._say_status()
        if self._reload:
            self._reload = False
            self.notifier.reloading()
            try:
                self._reload_settings()
            finally:
                self.notifier.ready(self._status())
        if self.log.recording is None:
            return
        if at >= self._next_gallery:
            self._next_gallery = at + GALLERY_SECONDS
            self._refresh_gallery(self.log.log)
        if at >= self._next_retention:
            self._next_retention = at + RETENTION_SECONDS
            self._apply_retention(self.log.log)

    def pause(self, seconds: float) -> None:
        """Sleeps `seconds`, less if SIGTERM comes, ticking all the while (watchdog, status, reload)."""
        deadline = time.monotonic() + seconds
        while not self._stop:
            self.tick()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(IDLE_WAIT, left))

    # -- lifecycle -------------------------------------------------------------------------------

    def run(self) -> int:
        """Runs until SIGTERM/SIGINT (or the end of a video file); returns the exit code."""
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        self._reload = hangup.take()  # a SIGHUP during the start: the config may have changed since it was read
        if clock_synchronized() is False:
            logger.warning("the clock is not synchronised (no time server reached yet?): rows are marked "
                           "clock_synced = 0, and retention waits until it is")  # fmt: skip
        try:
            return self.intake.run(self)
        finally:
            self.notifier.stopping()
            logger.info("stopping: %s", self._status())
            self.log.close()

    def _on_signal(self, number: int, frame: object) -> None:
        if number == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
        self.intake.wake()

    def _status(self) -> str:
        """The STATUS= line: the counts, or what is wrong with the log. Never raises."""
        if self.log.fault:
            return f"the log is failing ({self.log.fault.reason}), retrying; {self.counts.line(None)}"
        try:
            pending = self.log.log.pending_count(self.intake.name)
        except LogError:
            pending = None  # the intake meets the fault at its next write
        return self.counts.line(pending)

    def _status_due(self, at: float) -> bool:
        """Whether to say the status at monotonic time `at`: every STATUS_SECONDS, and soon after the counts
        change, so that `systemctl status` shows a file's outcome within a second, not up to five later."""
        since = at - self._status_said_at
        return since >= STATUS_SECONDS or (since >= STATUS_MIN_SECONDS and self.counts != self._said_counts)

    def _say_status(self) -> None:
        self.notifier.status(self._status())
        self._status_said_at, self._said_counts = time.monotonic(), replace(self.counts)

    def _crop_store(self, db: Path) -> CropStore | None:
        return CropStore(crops_folder(db), self.settings.crops_days) if self.settings.save_crops else None

    def _reload_settings(self) -> None:
        try:
            settings = load_settings(self._config_file, self._flags)
            pipeline = build_pipeline(settings)
        except Exception as error:  # any failure keeps the daemon on its working model
            logger.error("reload failed, keeping the running config and model: %s", error)
            return
        kept = {key: value_at(self.settings, key) for key in RESTART_ONLY}
        for key, value in kept.items():
            if value_at(settings, key) != value:
                logger.warning("%s changed in the config: restart the service to apply it", key)
        self.settings = with_values(settings, kept)
        self.pipeline = pipeline
        self.crops = self._crop_store(self.log.db)
        self._gallery_version = None  # the new model takes the log's enrolments at the next tick
        _set_level(self.settings)
        logger.info("reloaded the config and the model %s", pipeline.recognizer.path)
        self.log.use_model(pipeline.recognizer)

    # -- what the log holds ----------------------------------------------------------------------

    def _log_opened(self, log: ResultLog) -> None:
        """Another log, or the same one after a fault: look at its enrolments again."""
        self._gallery_version = None
        self._refresh_gallery(log)

    def _refresh_gallery(self, log: ResultLog) -> None:
        """People enrolled or forgotten in the log since the last look join or leave an embedder's
        gallery (a classifier ignores them); a log that fails now is met by the intake's next write."""
        try:
            version = log.gallery_version()
        except LogError:
            return
        if version == self._gallery_version:
            return
        recognizer = self.pipeline.recognizer
        try:
            recognizer.use_enrolments(log.enrolments(recognizer.network_sha256))
            if self._gallery_version is not None:
                logger.info("people enrolled or forgotten: %d people known now", len(recognizer.labels))
        except (LogError, ModelError) as error:
            logger.error("the log's enrolments cannot be used: %s", error)
        self._gallery_version = version

    def _apply_retention(self, log: ResultLog) -> None:
        """Deletes rows older than retention_days and saved crops older than crops_days, but only
        by a clock that is synchronised and has not gone back."""
        days = self.settings.retention_days
        if not days and not self.crops:
            return
        moment = now()
        if not wall_clock_trustworthy(log.newest_time(), moment):
            logger.warning("the clock is not synchronised or went back; retention waits so it cannot delete the log")
            return
        if days:
            cutoff = log_time(datetime.fromisoformat(moment.wall) - timedelta(days=days))
            deleted = log.forget_before(cutoff)
            if deleted:
                logger.info("retention: deleted %d inputs older than %s", deleted, cutoff)
        if self.crops:
            first_kept = self.crops.first_kept(moment.wall)
            if self.crops.expire(first_kept):
                log.clear_crops_before(first_kept)


def crops_folder(db: Path) -> Path:
    """Where saved crops go: beside the log (kept out of a watched folder that holds them)."""
    return db.parent / "crops"


def _set_level(settings: WatchSettings) -> None:
    """edgeface's level; OpenCV's own messages (several per broken file, printed past our log
    throttle) only at debug."""
    level = settings.log_level
    logging.getLogger("edgeface").setLevel(level.upper())
    opencv = cv2.utils.logging
    opencv.setLogLevel(opencv.LOG_LEVEL_INFO if level == "debug" else opencv.LOG_LEVEL_SILENT)


def run_watch(config_file: Path | None, flags: dict[str, object], sinks: Sequence[Sink] = ()) -> int:
    """Starts the daemon and runs it until it is stopped; returns the exit code.

    ConfigError, ModelError, LogError and friends propagate before anything runs, for the CLI to report.
    """
    for handler in logging.getLogger().handlers:
        handler.addFilter(Throttle())
    return Daemon(config_file, flags, sinks).run()
