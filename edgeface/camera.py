"""Frames from a camera, a network stream or a video file, for a daemon that runs for months.

`parse_source` reads what `--camera` names; `CameraSource` hands out frames from it. The
consumer always gets the newest frame: one reader thread owns the cv2.VideoCapture and reads
without pause (a live source is never left to buffer), keeping only the latest frame; the ones
the consumer was too slow for are dropped and counted. A supervisor thread starts readers,
notices when one ends or hangs, and reconnects with exponential backoff. `next_frame(timeout)`
only waits on a condition, so it returns within its timeout whatever the camera does: the
daemon can keep pinging systemd's watchdog and handle SIGTERM while the camera is down.

Stalls. OpenCV's FFmpeg backend (used here for streams and files) honours
CAP_PROP_OPEN_TIMEOUT_MSEC and CAP_PROP_READ_TIMEOUT_MSEC given as open parameters. Measured
with opencv-python-headless 4.x: a read of an HTTP MJPEG stream that stops sending returns
False 3 ms after the read timeout; an open of a server that accepts but never answers fails
3 ms after the open timeout (30 s when none is given). So a stall normally ends the
read by itself: a read that fails after blocking for read_timeout or more counts as a stall,
one that fails sooner as the stream dropping. V4L2 devices ignore those parameters and wait
for OpenCV's own select timeout instead (OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT, 10 s by default;
the service's environment can shorten it). CAP_PROP_BUFFERSIZE is not set: the FFmpeg backend
refuses it (set() returns False, measured), and a V4L2 queue stays empty anyway because the
reader drains it without pause.

Hung calls. A call still inside OpenCV at twice its timeout plus a second has ignored its
timeout (a slow DNS lookup, a FIFO nobody writes to, a hung NFS file, a driver). A thread blocked in
native code cannot be killed, so the supervisor abandons that reader: it can never publish a
frame again, and if its call returns it releases its capture and exits. No new capture is
opened meanwhile: a device stays busy while its capture is open, and FFmpeg's backend holds one
process-wide lock for the whole of an open, so a new open would only queue behind a hung one
(measured: a healthy stream's open waited 2.8 s behind an open that was timing out, and for
ever behind the open of a FIFO). If the
abandoned call has not returned within hung_limit, the source fails: next_frame raises
CameraFailed, and the daemon should exit non-zero so that systemd starts a new process.

Thread, not process. A child process per capture could be killed outright, and would contain
codec leaks and crashes; but every frame would cross a pipe or shared memory (28 MB/s for
640x480 at 30 fps, 190 MB/s for 1080p, on a Raspberry Pi), and each reconnect would spawn
an interpreter that imports cv2. With the timeouts above, the only calls that hang are the rare
ones that ignore them, and those end in CameraFailed and a restart by systemd: a process-level
kill, used only when it is needed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import cv2
import numpy as np

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
FIRST_BACKOFF = 1.0  # seconds before the first retry; doubled after each failure, up to max_backoff
STABLE_AFTER = 30.0  # seconds of frames after which a connection counts as good and the backoff restarts
POLL = 0.1  # how often the supervisor looks at its reader, in seconds
DEFAULT_FILE_FPS = 25.0  # the pace of a file that states no frame rate

T = TypeVar("T")


class SourceFinished(Exception):
    """The source has no more frames: a video file ended or could not be read, or it was closed."""


class CameraFailed(RuntimeError):
    """The source cannot recover inside this process (a capture call hung past hung_limit)."""


@dataclass(frozen=True)
class SourceSpec:
    """What --camera names. kind: "device", "stream" or "file"; target: what VideoCapture opens."""

    kind: str
    target: int | str

    def __str__(self) -> str:
        """The target for logs, with a password in a URL masked (journald keeps what it is given)."""
        if self.kind != "stream":
            return str(self.target)
        parts = urlsplit(self.target)
        if parts.password is None:
            return self.target
        user_info, _, host = parts.netloc.rpartition("@")
        return parts._replace(netloc=f"{user_info.split(':')[0]}:***@{host}").geturl()


def parse_source(text: str) -> SourceSpec:
    """Reads --camera: "0" is a device index; "/dev/video0" (or any /dev path, such as a stable
    /dev/v4l/by-id/ name) a device, which may be unplugged for now; an rtsp, rtmp or http(s) URL
    a stream; anything else the path of a video file, which must exist."""
    text = text.strip()
    if not text:
        raise ValueError("no camera source given")
    if text.isascii() and text.isdigit():
        return SourceSpec("device", int(text))
    if text.startswith("/dev/"):
        return SourceSpec("device", text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in STREAM_SCHEMES:
        return SourceSpec("stream", text)
    if scheme:
        raise ValueError(f"camera source {text!r}: unsupported URL scheme (use {', '.join(STREAM_SCHEMES)})")
    path = Path(text).expanduser()
    if not path.exists():
        raise ValueError(f"camera source {text!r}: no such file (nor a device index, a /dev path or a URL)")
    if path.is_dir():
        raise ValueError(f"camera source {text!r} is a folder, not a video file")
    return SourceSpec("file", str(path))


@dataclass(frozen=True, eq=False)  # no == on pixels
class Frame:
    """One picture. pixels: BGR uint8; number: its place among all frames read since the start;
    captured: time.monotonic() when it was read; skipped: frames dropped since the previous one
    handed out, because the consumer was slower than the source (or than the fps cap)."""

    pixels: np.ndarray
    number: int
    captured: float
    skipped: int = 0

    @property
    def lag(self) -> float:
        """Seconds from its capture until now."""
        return time.monotonic() - self.captured


@dataclass(frozen=True)
class CameraStatus:
    """A snapshot for status lines. state: starting, connecting, connected, disconnected (just
    lost), waiting (backoff before the next attempt), stuck (waiting for a hung call to return),
    finished, failed or closed. failures: connections in a row that failed or did not last, as of
    the last one lost; backoff: the wait before the next attempt, in seconds; frames_dropped: read
    but never handed out."""

    state: str = "starting"
    frames_read: int = 0
    frames_delivered: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    stalls: int = 0
    failures: int = 0
    backoff: float = 0.0
    last_error: str | None = None
    last_frame_at: float | None = None

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    @property
    def last_frame_age(self) -> float | None:
        """Seconds since the last frame was read, None before the first."""
        return None if self.last_frame_at is None else time.monotonic() - self.last_frame_at


class _Hub:
    """What the consumer, the supervisor and the readers share, under one lock: the newest frame
    and the status. Only the reader that owns the hub may publish; an abandoned one never can."""

    def __init__(self, fps: float | None) -> None:
        self.changed = threading.Condition()
        self.owner: _Reader | None = None
        self.newest: Frame | None = None
        self.status = CameraStatus()
        self.period = 1 / fps if fps else 0.0
        self.next_due = 0.0
        self.last_number = -1
        self.ending: tuple[type[Exception], str] | None = None

    def _update(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)

    def claim(self, reader: _Reader) -> None:
        with self.changed:
            self.owner = reader
            self._update(state="connecting", backoff=0.0)

    def connected(self, reader: _Reader) -> bool:
        with self.changed:
            if self.owner is reader:
                self._update(state="connected")
            return self.owner is reader

    def lost(self, error: str | None, stalled: bool) -> None:
        """The reader is gone (ended or abandoned): it may not publish any more."""
        with self.changed:
            self.owner = None
            self._update(state="disconnected", last_error=error, stalls=self.status.stalls + stalled)
            self.changed.notify_all()

    def set_state(self, state: str, **changes: object) -> None:
        with self.changed:
            self._update(state=state, **changes)

    def end(self, error: type[Exception], message: str, state: str) -> None:
        """No more frames after the one waiting, if any; the first ending wins."""
        with self.changed:
            if self.ending is None:
                self.ending = (error, message)
                self.owner = None
                self._update(state=state)
                self.changed.notify_all()

    def publish(self, reader: _Reader, pixels: np.ndarray, captured: float, wait_for_room: bool) -> bool:
        """Makes `pixels` the newest frame (dropping an untaken one, unless wait_for_room: then it
        waits for the consumer); False when the reader no longer owns the hub and must stop."""
        with self.changed:
            while wait_for_room and self.newest is not None and self.owner is reader:
                self.changed.wait()
            if self.owner is not reader:
                return False
            dropped = self.status.frames_dropped + (self.newest is not None)
            self.newest = Frame(pixels, self.status.frames_read, captured)
            self._update(frames_read=self.status.frames_read + 1, frames_dropped=dropped, last_frame_at=captured)
            self.changed.notify_all()
            return True

    def pause(self, reader: _Reader, seconds: float) -> bool:
        """Waits `seconds` (a file paced as a camera); False if the reader lost the hub meanwhile."""
        with self.changed:
            self.changed.wait_for(lambda: self.owner is not reader, seconds)
            return self.owner is reader

    def take(self, timeout: float) -> Frame | None:
        """The newest frame, once the fps cap allows one; None when none came within `timeout`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                now = time.monotonic()
                if self.newest is not None and now >= self.next_due:
                    return self._hand_out(now)
                if self.newest is None and self.ending is not None:
                    raise self.ending[0](self.ending[1])
                if now >= deadline:
                    return None
                self.changed.wait((deadline if self.newest is None else min(deadline, self.next_due)) - now)

    def _hand_out(self, now: float) -> Frame:
        frame = replace(self.newest, skipped=self.newest.number - self.last_number - 1)
        self.newest = None
        self.last_number = frame.number
        self.next_due = now + self.period
        self._update(frames_delivered=self.status.frames_delivered + 1)
        self.changed.notify_all()  # a file read in full waits for this room
        return frame


@dataclass(frozen=True)
class _Settings:
    open_timeout: float
    read_timeout: float
    realtime_files: bool


class _Reader:
    """One capture, opened and read in its own thread. Its calls into OpenCV are timed, so that
    the supervisor can tell one that hangs."""

    def __init__(self, spec: SourceSpec, settings: _Settings, hub: _Hub) -> None:
        self.spec = spec
        self.settings = settings
        self.hub = hub
        self.error: str | None = None
        self.stalled = False
        self.frames = 0
        self.connected_at: float | None = None
        self.ended = threading.Event()
        self._call: tuple[str, float, float] | None = None  # what, since when, its timeout
        self.thread = threading.Thread(target=self._run, name="camera-reader", daemon=True)

    def overrun(self) -> str | None:
        """The call that has ignored its timeout (blocked past twice it plus a second), if any."""
        call = self._call
        if call is None:
            return None
        what, since, timeout = call
        blocked = time.monotonic() - since
        if blocked <= 2 * timeout + 1:
            return None
        return f"{what} blocked for {blocked:.1f} s, past its {timeout:g} s timeout"

    def lasted(self) -> bool:
        """Whether this connection delivered frames long enough to count as good."""
        if self.frames == 0 or self.connected_at is None:
            return False
        return time.monotonic() - self.connected_at >= STABLE_AFTER

    def _timed(self, what: str, timeout: float, call: Callable[[], T]) -> T:
        self._call = (what, time.monotonic(), timeout)
        try:
            return call()
        finally:
            self._call = None

    def _run(self) -> None:
        try:
            self._capture()
        except Exception as error:  # reported to the supervisor, which logs it and reconnects
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.ended.set()

    def _capture(self) -> None:
        settings = self.settings
        capture = self._timed("open", settings.open_timeout, lambda: _open_capture(self.spec, settings))
        try:
            if not capture.isOpened():
                self.error = "could not open it"
                return
            self.connected_at = time.monotonic()
            if not self.hub.connected(self):
                return  # abandoned, or the source was closed, while it was opening
            logger.info("camera %s: opened, %s", self.spec, _describe(capture))
            self._read_all(capture)
        finally:
            self._timed("release", settings.read_timeout, capture.release)

    def _read_all(self, capture: cv2.VideoCapture) -> None:
        """Reads until the source ends or fails, or the reader loses the hub."""
        is_file = self.spec.kind == "file"
        period = _file_period(capture) if is_file and self.settings.realtime_files else 0.0
        start = time.monotonic()
        while True:
            began = time.monotonic()
            ok, pixels = self._timed("read", self.settings.read_timeout, capture.read)
            if not ok or pixels is None:
                self._note_end(time.monotonic() - began)
                return
            if period and not self.hub.pause(self, max(0.0, start + self.frames * period - time.monotonic())):
                return
            if not self.hub.publish(self, pixels, time.monotonic(), wait_for_room=is_file and not period):
                return
            self.frames += 1

    def _note_end(self, blocked: float) -> None:
        """Why the last read failed: a file's end, a stall (it waited the whole read timeout) or a drop."""
        if self.spec.kind == "file":
            return
        self.stalled = blocked >= self.settings.read_timeout
        self.error = f"stalled: no frame for {blocked:.1f} s" if self.stalled else "the stream ended"


def _open_capture(spec: SourceSpec, settings: _Settings) -> cv2.VideoCapture:
    """A VideoCapture for the source: V4L2 (or OpenCV's choice for an index) for a device, FFmpeg
    with open and read timeouts for a stream or a file."""
    if spec.kind == "device":
        return cv2.VideoCapture(spec.target, cv2.CAP_V4L2 if isinstance(spec.target, str) else cv2.CAP_ANY)
    timeouts = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(settings.open_timeout * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(settings.read_timeout * 1000),
    ]  # fmt: skip
    return cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, timeouts)


def _describe(capture: cv2.VideoCapture) -> str:
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    return f"{width}x{height} via {capture.getBackendName()}"


def _file_period(capture: cv2.VideoCapture) -> float:
    """Seconds per frame of a video file, from the frame rate it states."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return 1 / fps if 0 < fps <= 1000 else 1 / DEFAULT_FILE_FPS


class CameraSource:
    """Frames from a device, a stream or a video file, supervised: see the module's docstring.

    fps: hand out at most this many frames a second (None: as many as come). open_timeout and
    read_timeout (seconds): how long an open may take, and how long a read may wait for a frame
    before the stream counts as stalled. max_backoff: the longest wait between reconnections.
    realtime_files: pace a file at its own frame rate as if it were a camera (frames the
    consumer is too slow for are dropped); False hands out every frame, in order. hung_limit:
    how long a call that ignored its timeout is waited for before the source fails.

    Use it as `with CameraSource(...) as camera:` (or start() and close()), and call
    next_frame(timeout) in the daemon's loop.
    """

    def __init__(
        self,
        source: str,
        fps: float | None = None,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        max_backoff: float = 60.0,
        realtime_files: bool = True,
        hung_limit: float = 120.0,
    ) -> None:
        limits = {"open_timeout": open_timeout, "read_timeout": read_timeout, "max_backoff": max_backoff,
                  "hung_limit": hung_limit, "fps": 1 if fps is None else fps}  # fmt: skip
        for name, value in limits.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value}")
        self.spec = parse_source(source)
        self._settings = _Settings(open_timeout, read_timeout, realtime_files)
        self._max_backoff = max_backoff
        self._hung_limit = hung_limit
        self._hub = _Hub(fps)
        self._closing = threading.Event()
        self._reader: _Reader | None = None
        self._supervisor = threading.Thread(target=self._supervise, name="camera-supervisor", daemon=True)

    def __enter__(self) -> CameraSource:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> CameraSource:
        """Starts connecting, in the background; returns at once."""
        self._supervisor.start()
        return self

    def next_frame(self, timeout: float) -> Frame | None:
        """The newest frame not yet handed out, waiting at most `timeout` seconds for one; None if
        none came (the camera is down, stalled or slow). Raises SourceFinished when a file has
        been read to the end (or the source closed), CameraFailed when it cannot recover."""
        if self._supervisor.ident is None:
            raise RuntimeError("CameraSource.next_frame() before start()")
        return self._hub.take(timeout)

    def status(self) -> CameraStatus:
        return self._hub.status

    def close(self, timeout: float = 1.0) -> None:
        """Stops: the reader releases the capture, unless it is blocked in a call that takes
        longer than `timeout`, which is then left to end on its own."""
        self._closing.set()
        self._hub.end(SourceFinished, "the camera source was closed", state="closed")
        if self._supervisor.ident is not None:
            self._supervisor.join(timeout)
        if self._reader is not None:
            self._reader.thread.join(timeout)

    def _supervise(self) -> None:
        """Runs readers one after another until the source finishes, fails or is closed."""
        try:
            failures = 0
            while self._run_reader():
                failures = 1 if self._reader.lasted() else failures + 1
                if not self._back_off(failures):
                    return
        except Exception as error:  # a dead supervisor must not look like a camera that is just down
            logger.exception("camera %s: the supervisor failed", self.spec)
            self._hub.end(CameraFailed, f"camera supervisor failed: {error!r}", state="failed")

    def _run_reader(self) -> bool:
        """Runs one reader to its end; True when the source should be opened again."""
        reader = self._reader = _Reader(self.spec, self._settings, self._hub)
        self._hub.claim(reader)
        reader.thread.start()
        overrun = self._watch(reader)
        if self._closing.is_set():
            return False
        self._hub.lost(overrun or reader.error, stalled=reader.stalled or overrun is not None)
        if overrun and not self._outwait(reader, overrun):
            return False
        if self.spec.kind == "file":
            self._finish(overrun or reader.error, reader.frames)
            return False
        return True

    def _watch(self, reader: _Reader) -> str | None:
        """Waits for the reader to end; returns what overran if one of its calls ignored its timeout."""
        while not reader.ended.wait(POLL) and not self._closing.is_set():
            overrun = reader.overrun()
            if overrun:
                return overrun
        return None

    def _outwait(self, reader: _Reader, overrun: str) -> bool:
        """Waits up to hung_limit for an abandoned reader's call to return; False (the source has
        failed) if it does not: a new capture would only queue behind it."""
        logger.warning("camera %s: %s; waiting up to %g s for it to return", self.spec, overrun, self._hung_limit)
        self._hub.set_state("stuck")
        deadline = time.monotonic() + self._hung_limit
        while not reader.ended.wait(POLL):
            if self._closing.is_set():
                return False
            if time.monotonic() >= deadline:
                message = f"camera {self.spec}: {overrun}, and it has not returned after {self._hung_limit:g} s more"
                logger.error("%s; a new process is needed", message)
                self._hub.end(CameraFailed, message, state="failed")
                return False
        return True

    def _finish(self, error: str | None, frames: int) -> None:
        """A file is read once: its end, or its failure, finishes the source."""
        if error:
            logger.error("camera %s: %s", self.spec, error)
        else:
            logger.info("camera %s: end of the file after %d frames", self.spec, frames)
        self._hub.end(SourceFinished, f"{self.spec}: {error or 'end of the file'}", state="finished")

    def _back_off(self, failures: int) -> bool:
        """Waits before the next attempt (1 s, 2 s, 4 s… up to max_backoff); False when closing."""
        delay = min(self._max_backoff, FIRST_BACKOFF * 2 ** min(failures - 1, 30))
        why = self._hub.status.last_error
        logger.warning("camera %s: %s; reconnecting in %g s (%d failed in a row)", self.spec, why, delay, failures)
        self._hub.set_state("waiting", backoff=delay, failures=failures)
        if self._closing.wait(delay):
            return False
        self._hub.set_state("connecting", reconnects=self._hub.status.reconnects + 1)
        return True
