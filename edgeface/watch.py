"""`edgeface watch`: the daemon that classifies what arrives in a folder or from a camera.

The intake loses nothing. A file that becomes ready is first noted in the log's `pending` table;
its outcome (a result or a recorded error) replaces that note in one transaction, and only then
is the file moved to `move_done`/`move_failed`. A restart, however abrupt, resumes the pending
files, and a file whose content is already logged is recognised and not recorded twice.

It talks to systemd through $NOTIFY_SOCKET: READY=1 once the model is loaded and has passed
its self-test, WATCHDOG=1 from the processing loop, STATUS= with counts, STOPPING=1. SIGTERM
finishes the image in hand and leaves the rest pending; SIGHUP reloads the config and the model,
keeping the old ones if the new ones fail.

A log that fails while the folder is watched (locked by another writer, read-only, on a full
disk, deleted) is a fault to wait out, not a reason to exit: the daemon says so once, leaves the
files where they are (in `pending`, or in the folder), opens the log again after a wait that
grows from 1 to 30 s while it keeps feeding the watchdog and honouring SIGTERM, and lists the
folder again once the log takes writes. A log deleted under the daemon is noticed before any file
is moved, and a new one is started in its place. A log that no wait can mend (damaged, no SQLite
file, or from a newer edgeface) stops the start instead, with exit code 2.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2

from edgeface.camera import parse_source
from edgeface.clock import clock_synchronized, log_time, now, wall_clock_trustworthy
from edgeface.declared import value_at, with_values
from edgeface.folder import FolderSource
from edgeface.crops import CropStore
from edgeface.images import ImageError, decode, read_input
from edgeface.model import ModelError
from edgeface.notify import SystemdNotifier, watchdog_interval
from edgeface.pipeline import Pipeline
from edgeface.results import ImageResult
from edgeface.selftest import run_self_test
from edgeface.settings import ConfigError, WatchSettings, load_settings
from edgeface.scanview import printable
from edgeface.store import LogError, LogGone, ResultLog, default_path
from edgeface.throttle import Throttle
from edgeface.workers import PipelineRecipe

log = logging.getLogger("edgeface.watch")

BATCH = 4  # files processed per commit: few enough for low latency, enough to share the fsync
IDLE_WAIT = 0.5  # seconds to wait for new files; also bounds how late a signal is noticed
STATUS_SECONDS = 5.0
RETENTION_SECONDS = 3600.0
GALLERY_SECONDS = 1.0  # how often the log is asked whether someone was enrolled or forgotten
BACKLOG_CHUNK = 500  # paths noted as pending per transaction while draining a rescan
MAX_ATTEMPTS = 3  # tries of a file that was in hand whenever the daemon died
# Another process's transaction is waited for this long, then the log counts as failing: the loop
# must not stall in SQLite for long, away from the watchdog and from SIGTERM.
LOG_BUSY_SECONDS = 2.0
FIRST_RETRY, LAST_RETRY = 1.0, 30.0  # seconds before opening a failing log again, doubling in between


@dataclass
class Counts:
    """What the daemon did since it started, for STATUS= and the log."""

    done: int = 0
    failed: int = 0
    already: int = 0
    frames: int = 0
    appearances: int = 0
    lag: float = 0.0  # seconds from a frame's capture to its classification, the latest frame's
    max_lag: float = 0.0
    skipped: int = 0  # frames the camera delivered that were too old to classify
    camera: str = ""  # the camera's state; empty for a folder

    def line(self, pending: int | None) -> str:
        """The counts as one line; `pending` is None while the log cannot be read."""
        if self.camera:
            return (
                f"camera {self.camera}, {self.frames} frames classified, {self.skipped} skipped, "
                f"{self.appearances} appearances, lag {self.lag:.3f} s (max {self.max_lag:.3f} s)"
            )
        waiting = "" if pending is None else f", {pending} pending"
        return f"{self.done} done, {self.failed} failed, {self.already} already logged{waiting}"


@dataclass
class LogFault:
    """The log is failing: why, since when (monotonic seconds), and how long to wait before opening it again."""

    reason: str
    since: float
    wait: float = FIRST_RETRY


def build_pipeline(settings: WatchSettings) -> Pipeline:
    """The model and detector that `settings` name, self-tested; raises on any problem."""
    cv2.setNumThreads(settings.threads)  # the detector's threads, like LiteRT's
    recipe = PipelineRecipe(model=settings.model, threads=settings.threads, detector=settings.detector)
    pipeline = recipe.build()
    run_self_test(pipeline.recognizer)
    return pipeline


class Daemon:
    """One running `edgeface watch`: settings, model, log, and the loop for its source."""

    def __init__(self, config_file: Path | None, flags: dict[str, object]) -> None:
        self._config_file, self._flags = config_file, flags
        self.settings = load_settings(config_file, flags)
        folder, camera = self.settings.folder.path, self.settings.camera.source
        if folder and not Path(folder).is_dir():
            raise ConfigError(f"the folder to watch, {folder}, does not exist or is not a folder")
        if camera:
            try:
                parse_source(camera)
            except ValueError as error:
                raise ConfigError(f"camera.source: {error}") from None
        _set_level(self.settings)
        self.pipeline = build_pipeline(self.settings)
        self.moves = {"done": self.settings.folder.move_done, "error": self.settings.folder.move_failed}
        self.db = Path(self.settings.db) if self.settings.db else default_path()
        self.crops = CropStore(self.db.parent / "crops", self.settings.crops_days) \
            if self.settings.save_crops else None  # fmt: skip
        self.notifier = SystemdNotifier()
        self.counts = Counts()
        self.log: ResultLog | None = None  # None while a failing log waits to be opened again
        self.model_id = 0
        self.fault: LogFault | None = None
        self.waiting = "files wait in the folder" if folder else "appearances wait in memory"  # during a fault
        self._catch_up = False  # list the folder again: files that arrived while the log failed are in it
        self._folder_lost = False
        self._suspects: set[str] | None = None  # pending at start: maybe what ended the last run
        self._stop = self._reload = False
        self._next_ping = self._next_status = self._next_retention = self._next_gallery = 0.0
        self._gallery_version: int | None = None
        interval = watchdog_interval()
        self._ping_every = interval / 2 if interval else None
        try:
            self._open_log()
        except LogError as error:
            if error.lasting:
                raise
            self._log_failed(error)

    def _register_model(self) -> int:
        classifier = self.pipeline.recognizer
        return self.log.register_model(classifier.sha256, str(classifier.path), classifier.labels)

    def _on_signal(self, number: int, frame: object) -> None:
        if number == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True

    def run(self) -> int:
        """Runs until SIGTERM/SIGINT (or the end of a video file); returns the exit code."""
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        if clock_synchronized() is False:
            log.warning("the clock is not synchronised (no time server reached yet?): rows are marked "
                        "clock_synced = 0, and retention waits until it is")  # fmt: skip
        try:
            if self.settings.folder.path:
                return self._watch_folder()
            from edgeface.watch_camera import watch_camera  # here: watch_camera imports this module

            return watch_camera(self)
        finally:
            self.notifier.stopping()
            log.info("stopping: %s", self._status())
            self._close_log()

    def tick(self) -> None:
        """Watchdog ping, status, retention and a requested reload: called often from every loop."""
        moment = time.monotonic()
        if self._ping_every and moment >= self._next_ping:
            self.notifier.watchdog()
            self._next_ping = moment + self._ping_every
        if moment >= self._next_status:
            self.notifier.status(self._status())
            self._next_status = moment + STATUS_SECONDS
        if self.log is not None and moment >= self._next_retention:
            self._apply_retention()
            self._next_retention = moment + RETENTION_SECONDS
        if self.log is not None and moment >= self._next_gallery:
            with contextlib.suppress(LogError):
                self._refresh_gallery()
            self._next_gallery = moment + GALLERY_SECONDS
        if self._reload:
            self._reload = False
            self.notifier.reloading()
            try:
                self._reload_settings()
            finally:
                self.notifier.ready(self._status())

    def _status(self) -> str:
        """The STATUS= line: the counts, or what is wrong with the log. Never raises."""
        if self.fault:
            return f"the log is failing ({self.fault.reason}), retrying; {self.counts.line(None)}"
        try:
            pending = self.log.pending_count()
        except LogError:
            pending = None  # the loop meets the fault at its next write
        return self.counts.line(pending)

    def _reload_settings(self) -> None:
        try:
            settings = load_settings(self._config_file, self._flags)
            pipeline = build_pipeline(settings)
        except Exception as error:  # any failure keeps the daemon on its working model
            log.error("reload failed, keeping the running config and model: %s", error)
            return
        kept = {key: value_at(self.settings, key) for key in ("folder.path", "camera.source", "db")}
        for key, value in kept.items():
            if value_at(settings, key) != value:
                log.warning("%s changed in the config: restart the service to apply it", key)
        self.settings = with_values(settings, kept)
        self.pipeline = pipeline
        self._gallery_version = None  # the new model takes the log's enrolments at the next tick
        _set_level(self.settings)
        log.info("reloaded the config and the model %s", pipeline.recognizer.path)
        if self.log is not None:  # else it is registered when the log is opened again
            self.model_id = self._register_model()

    def _apply_retention(self) -> None:
        """Deletes rows older than retention_days and saved crops older than crops_days, but only
        by a clock that is synchronised and has not gone back."""
        days = self.settings.retention_days
        if not days and not self.crops:
            return
        moment = now()
        if not wall_clock_trustworthy(self.log.newest_time(), moment):
            log.warning("the clock is not synchronised or went back; retention waits so it cannot delete the log")
            return
        if days:
            cutoff = log_time(datetime.fromisoformat(moment.wall) - timedelta(days=days))
            deleted = self.log.forget_before(cutoff)
            if deleted:
                log.info("retention: deleted %d inputs older than %s", deleted, cutoff)
        if self.crops:
            first_kept = self.crops.first_kept(moment.wall)
            if self.crops.expire(first_kept):
                self.log.clear_crops_before(first_kept)

    def _save_crops(self, results: list[ImageResult], input_ids: list[int]) -> None:
        """With save_crops: each face's crop, written before the file is moved, named in the log."""
        wall = now().wall
        for result, input_id in zip(results, input_ids):
            if not result.faces:
                continue
            try:
                pixels = decode(read_input(result.path).content)
            except ImageError as error:
                log.warning("%s: no crops saved: %s", printable(result.path), error)
                continue
            paths = self.crops.save(pixels, [face.box for face in result.faces], wall, str(input_id))
            self.log.set_crops(input_id, paths)

    # -- the log's faults ------------------------------------------------------------------------

    def _open_log(self) -> None:
        """Opens the log, registers the model and proves that a write gets through."""
        self.log = ResultLog(self.db, durable=any(self.moves.values()), busy_seconds=LOG_BUSY_SECONDS)
        try:
            self.model_id = self._register_model()
            self.log.check_writable()
            self._gallery_version = None  # another log, or the same one after a fault: look again
            self._refresh_gallery()
        except LogError:
            self._close_log()
            raise

    def _refresh_gallery(self) -> None:
        """People enrolled or forgotten in the log since the last look join or leave an embedder's
        gallery (a classifier ignores them); a log that fails now is met by the loop's next write."""
        try:
            version = self.log.gallery_version()
            if version != self._gallery_version:
                recognizer = self.pipeline.recognizer
                recognizer.use_enrolments(self.log.enrolments(recognizer.network_sha256))
                if self._gallery_version is not None:
                    log.info("people enrolled or forgotten: %d people known now", len(recognizer.labels))
                self._gallery_version = version
        except (LogError, ModelError) as error:
            log.error("the log's enrolments cannot be used: %s", error)
            self._gallery_version = version

    def _close_log(self) -> None:
        if self.log is not None:
            with contextlib.suppress(LogError):
                self.log.close()
            self.log = None

    def _check_log(self) -> None:
        """Raises when the log file was deleted or replaced under the daemon: its commits would vanish."""
        if self.log.replaced():
            raise LogGone(self.db, "it was deleted or replaced while in use")

    def _log_failed(self, error: LogError) -> None:
        """Starts (or continues) a fault: says so once, or again when the reason changes, and closes the log
        for the loop to open again later. Nothing is lost: what was not recorded waits (`self.waiting` says where)."""
        reason = error.reason
        if self.fault is None or self.fault.reason != reason:
            log.error("the log %s is failing: %s; %s, and the log is opened again in %.0f s, then less often "
                      "(every %.0f s at most)", self.db, reason, self.waiting,
                      self.fault.wait if self.fault else FIRST_RETRY, LAST_RETRY)  # fmt: skip
        if self.fault is None:
            self.fault = LogFault(reason, time.monotonic())
        self.fault.reason = reason
        self._catch_up = True
        self._close_log()
        self.notifier.status(self._status())

    def _reopen_log(self) -> None:
        """Waits out the fault's current delay, feeding the watchdog, then opens the log again; a new, empty
        log when the old one is gone."""
        self._pause(self.fault.wait)
        if not self._stop:
            self.reopen_log_now("catching up")

    def reopen_log_now(self, then: str) -> bool:
        """Opens the failing log again at once (a new, empty log when the old one is gone) and ends the fault,
        saying `then` (what happens next); else the next try waits twice as long. Returns whether it works."""
        self.fault.wait = min(2 * self.fault.wait, LAST_RETRY)
        existed = self.db.exists()
        try:
            self._open_log()
        except LogError as error:
            self._log_failed(error)
            return False
        if not existed:
            log.warning("the log %s did not exist: started a new, empty one there", self.db)
        log.warning("the log %s works again after %.0f s; %s", self.db, time.monotonic() - self.fault.since, then)
        self.fault = None
        return True

    def _pause(self, seconds: float) -> None:
        """Sleeps `seconds`, less if SIGTERM comes, ticking all the while (watchdog, status, reload)."""
        deadline = time.monotonic() + seconds
        while not self._stop:
            self.tick()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(IDLE_WAIT, left))

    # -- folder ------------------------------------------------------------------------------

    def _watch_folder(self) -> int:
        folder = self.settings.folder
        source = FolderSource(
            folder.path,
            folder.recursive,
            folder.poll,
            folder.poll_interval,
            excluded=tuple(str(path) for path in self.moves.values() if path),
        )
        source.start()
        name = f"folder:{source.root}"
        self.notifier.ready(f"watching {source.root}")
        log.info("watching %s with %s", source.root, self.pipeline.recognizer.path)
        try:
            while not self._stop:
                if self.log is None:
                    self._reopen_log()
                    continue
                try:
                    self._step(source, name)
                except LogError as error:
                    self._log_failed(error)
        finally:
            source.stop()
        return 0

    def _step(self, source: FolderSource, name: str) -> None:
        """One turn of the folder loop: housekeeping, the backlog when due, a batch of pending files, new arrivals."""
        self.tick()
        self._check_log()
        if not self._folder_present(source):
            time.sleep(IDLE_WAIT)  # pending files wait: they are not errors, their folder is away
            return
        if self._catch_up or source.needs_rescan():
            self._note_backlog(source, name)
            self._catch_up = False
        waiting = self.log.next_pending(BATCH)
        if waiting and self._suspects is None:
            self._suspects = set(waiting)  # what was in hand if the last run died: tried one by one
        if waiting and self._suspects & set(waiting):
            waiting = self._try_suspect(waiting[0], name, source.root)
        if waiting:
            self._process_files(waiting, name, source.root)
        arrived = source.take(0 if waiting else IDLE_WAIT)
        if arrived:
            self._note_arrivals(arrived, name, source.root)  # if this fails, the catch-up listing finds them

    def _try_suspect(self, path: str, name: str, root: Path) -> list[str]:
        """A file that was pending when the daemon last started may be what stopped it (a decoder
        crash, the memory limit): each try is counted first, and after MAX_ATTEMPTS it ends as an
        error without being decoded again, so one file cannot keep the daemon in a restart loop.
        Returns the files to process now."""
        self._suspects.discard(path)
        attempts = self.log.count_attempt(path)
        if attempts <= MAX_ATTEMPTS:
            return [path]
        error = f"the daemon stopped {attempts - 1} times while this file was in hand; not tried again"
        self._finish([ImageResult.unreadable(path, error)], [], name, root)
        return []

    def _folder_present(self, source: FolderSource) -> bool:
        """Whether the watched folder is there and watched; re-watches it when it comes back."""
        if source.alive:
            return True
        if not self._folder_lost:
            log.error("the watched folder %s is gone or was replaced; waiting for it to come back", source.root)
            self._folder_lost = True
        if source.restart():
            log.warning("the watched folder %s is back: watching it again and listing what is in it", source.root)
            self._folder_lost = False
        return not self._folder_lost

    def _note_arrivals(self, paths: list[str], name: str, root: Path) -> None:
        """Notes `paths` as pending; a name that is not UTF-8 (which the log cannot hold as text,
        and which would not survive the pending table) ends at once as an error."""
        badly_named = [path for path in paths if not _utf8(path)]
        self.log.add_pending([path for path in paths if _utf8(path)], name)
        if badly_named:
            results = [ImageResult.unreadable(path, "the file name is not valid UTF-8") for path in badly_named]
            self._finish(results, [], name, root)

    def _note_backlog(self, source: FolderSource, name: str) -> None:
        chunk: list[str] = []
        for path in source.rescan():
            chunk.append(path)
            if len(chunk) == BACKLOG_CHUNK:
                self._note_arrivals(chunk, name, source.root)
                chunk = []
                self.tick()
        if chunk:
            self._note_arrivals(chunk, name, source.root)

    def _process_files(self, paths: list[str], name: str, root: Path) -> None:
        """Outcomes for `paths`, committed together, then the files moved; stops early on SIGTERM."""
        results: list[ImageResult] = []
        known: list[tuple[str, str]] = []  # (path, earlier status) of inputs already logged
        stale: list[str] = []
        for path in paths:
            if self._stop:
                break  # the rest stay pending for the next start
            try:
                source = read_input(path)
            except ImageError as error:
                if not os.path.lexists(path) and self.log.was_read(path):
                    stale.append(path)  # a late second event for a file already logged and moved
                else:
                    results.append(ImageResult.unreadable(path, str(error)))
                continue
            earlier = self.log.outcome_of(source.path, source.sha256)
            if earlier:
                known.append((path, earlier))
                continue
            results.append(self.pipeline.process(source))
        self._finish(results, known, name, root, stale)

    def _finish(
        self, results: list[ImageResult], known: list[tuple[str, str]], name: str, root: Path, stale: list[str] = ()
    ) -> None:
        """Commits `results` (and forgets the pending notes of `known` and `stale` inputs), then
        reports and moves the files."""
        input_ids = self.log.record_batch(results, name, self.model_id)
        if self.crops:
            self._save_crops(results, input_ids)
        self.log.drop_pending([path for path, _ in known] + list(stale))
        self._check_log()  # committed to a log deleted meanwhile is not committed: keep the files
        for result in results:
            if result.error:
                self.counts.failed += 1
                log.error("%s: %s", printable(result.path), result.error)
            else:
                self.counts.done += 1
                log.info("%s: %s", printable(result.path), result.faces_text())
        self.counts.already += len(known)
        for path, status in [*((r.path, r.status) for r in results), *known]:
            self._move(path, status, root)

    def _move(self, path: str, status: str, root: Path) -> None:
        """Moves a file whose outcome is committed to its folder, keeping its path below the root."""
        target_folder = self.moves.get(status)
        if not target_folder or not os.path.lexists(path):
            return
        target = Path(str(target_folder)) / Path(path).relative_to(root)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _move_out(path, target)
        except OSError as error:
            log.error("cannot move %s to %s: %s", path, target_folder, error)

    def stop_requested(self) -> bool:
        return self._stop


def _move_out(path: str, target: Path) -> None:
    """Moves `path` to `target` by a hard link and an unlink, or by copying across file systems.

    Not by rename: the watched folder would see IN_MOVED_FROM, which watchdog holds for half a
    second to pair with a move in, and every event queued behind it waits too. A target that
    already is this file (a move cut short by a crash) is kept, and only the source removed.
    """
    if target.exists() and os.path.samefile(path, target):
        os.unlink(path)
        return
    try:
        os.link(path, _free_name(target))
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):  # other file system, no hard links
            raise
        shutil.move(path, _free_name(target))
        return
    os.unlink(path)


def _free_name(target: Path) -> Path:
    """`target`, or `name.1.jpg`, `name.2.jpg`… when a file of that name is already there."""
    candidate, number = target, 0
    while candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.stem}.{number}{target.suffix}")
    return candidate


def _set_level(settings: WatchSettings) -> None:
    """edgeface's level; OpenCV's own messages (several per broken file, printed past our log
    throttle) only at debug."""
    level = settings.log_level
    logging.getLogger("edgeface").setLevel(level.upper())
    opencv = cv2.utils.logging
    opencv.setLogLevel(opencv.LOG_LEVEL_INFO if level == "debug" else opencv.LOG_LEVEL_SILENT)


def _utf8(path: str) -> bool:
    """Whether a file name decoded by Python is valid UTF-8 (undecodable bytes become surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_watch(config_file: Path | None, flags: dict[str, object]) -> int:
    """Starts the daemon and runs it until it is stopped; returns the exit code.

    ConfigError, ModelError and friends propagate before anything runs, for the CLI to report.
    """
    for handler in logging.getLogger().handlers:
        handler.addFilter(Throttle())
    return Daemon(config_file, flags).run()
