"""edgeface.camera on real parts: video files written here with OpenCV, a real clip when the
shared data has it, and a local HTTP MJPEG camera that streams, dies, comes back and stalls.

Every wait goes through `keep_calling`, which calls next_frame() as the daemon's loop does and
checks that each call returned within its timeout: the daemon never froze, whatever the camera did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import pytest

from edgeface.camera import CameraFailed, CameraSource, Frame, SourceFinished, SourceSpec, parse_source
from helpers import CLIP
from mjpeg_server import MjpegServer, numbered_image, read_number

FILE_FPS = 50.0
FILE_FRAMES = 50
CALL = 0.1  # the timeout the tests give next_frame()
SLACK = 0.15  # how much later than its timeout a call may return on a busy machine


@pytest.fixture()
def numbered_video(tmp_path: Path) -> Path:
    """A 1-second MJPG .avi at 50 fps whose frame i shows the number i."""
    path = tmp_path / "numbered.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FILE_FPS, (160, 120))
    assert writer.isOpened()
    for number in range(FILE_FRAMES):
        writer.write(numbered_image(number))
    writer.release()
    return path


@pytest.fixture()
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe nobody writes to: opening it for reading blocks in native code until a writer
    comes. The test's end brings one, else the hung open would hold FFmpeg's open lock for good."""
    path = tmp_path / "nobody-writes-here"
    os.mkfifo(path)
    yield path
    release_fifo(path)


def release_fifo(path: Path) -> None:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # nobody is blocked opening it


@pytest.fixture()
def mjpeg() -> Iterator[MjpegServer]:
    server = MjpegServer(fps=30).start()
    yield server
    server.stop()


def keep_calling(
    camera: CameraSource | tuple[CameraSource, ...], until: Callable[[], bool], within: float
) -> list[Frame]:
    """Calls next_frame(CALL) on the camera (or on each of several in turn) until `until()` holds
    (failing after `within` seconds), checking that every call came back in time; returns the
    frames it got."""
    cameras = camera if isinstance(camera, tuple) else (camera,)
    frames = []
    deadline = time.monotonic() + within
    while not until():
        assert time.monotonic() < deadline, f"still waiting after {within} s: {[c.status() for c in cameras]}"
        for each in cameras:
            began = time.monotonic()
            frame = each.next_frame(CALL)
            assert time.monotonic() - began < CALL + SLACK, "next_frame() blocked past its timeout"
            if frame is not None:
                frames.append(frame)
    return frames


def read_to_end(camera: CameraSource) -> list[Frame]:
    """Every frame the camera hands out until it finishes."""
    frames = []
    with pytest.raises(SourceFinished):
        while True:
            frame = camera.next_frame(2.0)
            if frame is not None:
                frames.append(frame)
    return frames


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("0", "device", 0),
        (" 2 ", "device", 2),
        ("/dev/video0", "device", "/dev/video0"),
        ("/dev/v4l/by-id/usb-Cam-video-index0", "device", "/dev/v4l/by-id/usb-Cam-video-index0"),
        ("rtsp://10.0.0.7:554/stream1", "stream", "rtsp://10.0.0.7:554/stream1"),
        ("HTTP://cam.local/video.mjpg", "stream", "HTTP://cam.local/video.mjpg"),
        ("https://cam.local/video.mjpg", "stream", "https://cam.local/video.mjpg"),
    ],
)
def test_parse_source_devices_and_urls(text: str, kind: str, target: int | str) -> None:
    assert parse_source(text) == SourceSpec(kind, target)


def test_parse_source_files_and_errors(numbered_video: Path) -> None:
    assert parse_source(str(numbered_video)) == SourceSpec("file", str(numbered_video))
    for text, message in (
        ("", "no camera source"),
        (str(numbered_video.with_name("missing.avi")), "no such file"),
        (str(numbered_video.parent), "is a folder"),
        ("ftp://cam.local/video", "unsupported URL scheme"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_source(text)


def test_a_password_in_a_url_is_masked_for_logs() -> None:
    assert str(parse_source("rtsp://admin:s3cret@10.0.0.7/live")) == "rtsp://admin:***@10.0.0.7/live"
    assert str(parse_source("rtsp://10.0.0.7/live")) == "rtsp://10.0.0.7/live"


def test_settings_are_checked_and_start_comes_first(numbered_video: Path) -> None:
    with pytest.raises(ValueError, match="fps must be positive"):
        CameraSource(str(numbered_video), fps=0)
    with pytest.raises(ValueError, match="read_timeout must be positive"):
        CameraSource(str(numbered_video), read_timeout=-1)
    with pytest.raises(RuntimeError, match="before start"):
        CameraSource(str(numbered_video)).next_frame(0.1)


def test_a_file_read_in_full_gives_every_frame_in_order_then_finishes(numbered_video: Path) -> None:
    with CameraSource(str(numbered_video), realtime_files=False) as camera:
        frames = read_to_end(camera)
        with pytest.raises(SourceFinished, match="end of the file"):
            camera.next_frame(0.1)  # and it stays finished
        status = camera.status()
    assert [frame.number for frame in frames] == list(range(FILE_FRAMES))
    assert [read_number(frame.pixels) for frame in frames] == list(range(FILE_FRAMES))
    assert {frame.skipped for frame in frames} == {0}
    assert frames[0].pixels.shape == (120, 160, 3) and frames[0].pixels.dtype == "uint8"
    assert (status.state, status.frames_read, status.frames_delivered, status.frames_dropped) == (
        "finished", FILE_FRAMES, FILE_FRAMES, 0
    )


def test_a_realtime_file_and_a_slow_consumer_get_the_newest_frames(numbered_video: Path) -> None:
    began = time.monotonic()
    with CameraSource(str(numbered_video)) as camera:
        frames = []
        with pytest.raises(SourceFinished):
            while True:
                frame = camera.next_frame(2.0)
                if frame is not None:
                    frames.append((frame, frame.lag))
                    time.sleep(0.15)  # a consumer slower than the file's 50 fps
        status = camera.status()
    assert time.monotonic() - began >= 0.9 * FILE_FRAMES / FILE_FPS, "the file was not paced at its frame rate"
    numbers = [frame.number for frame, _ in frames]
    assert numbers == sorted(set(numbers)) and len(numbers) < FILE_FRAMES / 2
    for previous, (frame, lag) in zip([-1, *numbers], frames):
        assert read_number(frame.pixels) == frame.number
        assert frame.skipped == frame.number - previous - 1
        assert lag < 1 / FILE_FPS + SLACK, "a frame handed out was not the newest"
    assert status.frames_read == FILE_FRAMES
    assert status.frames_dropped == sum(frame.skipped for frame, _ in frames) > FILE_FRAMES / 2


@pytest.mark.skipif(not CLIP.exists(), reason=f"{CLIP} is not in this checkout's shared data")
def test_a_real_clip_is_read_to_the_end() -> None:
    expected = cv2.VideoCapture(str(CLIP))
    count = int(expected.get(cv2.CAP_PROP_FRAME_COUNT))
    with CameraSource(str(CLIP), realtime_files=False) as camera:
        frames = read_to_end(camera)
    assert len(frames) == count > 100
    height, width = expected.get(cv2.CAP_PROP_FRAME_HEIGHT), expected.get(cv2.CAP_PROP_FRAME_WIDTH)
    assert frames[0].pixels.shape == (height, width, 3)


def test_the_fps_cap_is_honoured_on_a_live_stream() -> None:
    server = MjpegServer(fps=60).start()
    try:
        with CameraSource(server.url, fps=10) as camera:
            keep_calling(camera, lambda: camera.status().connected, within=5)
            began = time.monotonic()
            frames = keep_calling(camera, lambda: time.monotonic() - began > 1.0, within=2)
    finally:
        server.stop()
    gaps = [later.captured - earlier.captured for earlier, later in zip(frames, frames[1:])]
    assert 7 <= len(frames) <= 11, f"{len(frames)} frames in 1 s at fps=10"
    assert min(gaps) > 0.06, "two frames handed out closer than the cap allows"
    assert sum(frame.skipped for frame in frames[1:]) > 2 * len(frames), "a 60 fps stream capped at 10 drops frames"


def test_a_stream_that_dies_and_comes_back_is_reconnected(mjpeg: MjpegServer) -> None:
    with CameraSource(mjpeg.url, open_timeout=1.0, read_timeout=1.0, max_backoff=0.5) as camera:
        before = keep_calling(camera, lambda: camera.status().frames_delivered >= 5, within=5)
        mjpeg.stop()
        keep_calling(camera, lambda: not camera.status().connected, within=2)
        # down for a while: a retry finds the port closed
        keep_calling(camera, lambda: camera.status().last_error == "could not open it", within=3)
        mjpeg.start()
        after = keep_calling(camera, lambda: camera.status().frames_delivered >= 10, within=6)
        status = camera.status()
    assert status.connected and status.reconnects >= 2
    assert after[-1].number > before[-1].number
    assert status.last_error == "could not open it"


def test_a_stream_that_stalls_without_closing_is_detected_and_reconnected(
    mjpeg: MjpegServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgeface.camera")
    read_timeout = 1.0
    with CameraSource(mjpeg.url, read_timeout=read_timeout, max_backoff=0.5) as camera:
        keep_calling(camera, lambda: camera.status().frames_delivered >= 5, within=5)
        mjpeg.stall()
        stalled_at = time.monotonic()
        keep_calling(camera, lambda: camera.status().stalls == 1, within=read_timeout + 1.0)
        assert time.monotonic() - stalled_at >= read_timeout - 0.1  # its last read began a frame before
        assert camera.status().last_error.startswith("stalled: no frame for")
        last = camera.status().frames_read
        frames = keep_calling(camera, lambda: camera.status().frames_read > last + 5, within=5)
        assert frames and frames[-1].lag < 0.5
        keep_calling(camera, lambda: mjpeg.open_connections == 1, within=2)  # the stalled one was let go
        status = camera.status()
    assert (status.state, status.stalls, status.reconnects) == ("connected", 1, 1)
    opened, stalled, reopened = [record.getMessage().split(": ", 1)[1] for record in caplog.records]  # none per frame
    assert opened == reopened == "opened, 160x120 via FFMPEG"
    assert re.fullmatch(r"stalled: no frame for 1\.\d s; reconnecting in 0\.5 s \(1 failed in a row\)", stalled)


def test_a_source_that_never_opens_is_retried_with_a_growing_backoff() -> None:
    """A closed port and a missing device, side by side: they wait out their backoffs together."""
    sources = (f"http://127.0.0.1:{free_port()}/stream.mjpg", "/dev/video99")
    backoffs: list[set[float]] = [set() for _ in sources]
    with contextlib.ExitStack() as stack:
        opened = (CameraSource(source, open_timeout=1.0, max_backoff=1.2) for source in sources)
        cameras = tuple(stack.enter_context(camera) for camera in opened)

        def third_failures() -> bool:
            for camera, seen in zip(cameras, backoffs):
                seen.add(camera.status().backoff)
            return all(camera.status().failures >= 3 for camera in cameras)

        keep_calling(cameras, third_failures, within=5)
        statuses = [camera.status() for camera in cameras]
    for source, status, seen in zip(sources, statuses, backoffs):
        assert not status.connected and status.frames_read == 0, source
        assert status.last_error == "could not open it", source
        assert seen - {0.0} == {1.0, 1.2}, f"{source}: the backoff doubles, up to max_backoff"
        assert status.reconnects == 2, source


def test_an_open_that_ignores_its_timeout_fails_the_source_without_freezing_it(fifo: Path) -> None:
    before = set(threading.enumerate())
    camera = CameraSource(str(fifo), open_timeout=0.1, hung_limit=0.3).start()
    with pytest.raises(CameraFailed, match="open blocked for"):
        keep_calling(camera, lambda: False, within=5)
    assert camera.status().state == "failed" and camera.status().stalls == 1
    began = time.monotonic()
    camera.close(timeout=0.2)
    assert time.monotonic() - began < 0.5, "close() waited for the hung call"
    stuck = [thread for thread in set(threading.enumerate()) - before if thread.name.startswith("camera")]
    assert [thread.name for thread in stuck] == ["camera-reader"]
    release_fifo(fifo)  # the hung open returns at last
    stuck[0].join(5)
    assert not stuck[0].is_alive(), "the abandoned reader did not exit when its call returned"


def test_a_hung_call_that_returns_in_time_does_not_fail_the_source(fifo: Path) -> None:
    with CameraSource(str(fifo), open_timeout=0.1, hung_limit=30) as camera:
        keep_calling(camera, lambda: camera.status().state == "stuck", within=5)
        release_fifo(fifo)
        with pytest.raises(SourceFinished, match="open blocked for"):
            keep_calling(camera, lambda: False, within=5)  # a file is not reopened: it is finished
        assert camera.status().state == "finished"
