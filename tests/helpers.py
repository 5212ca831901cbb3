"""What the test modules share: where things are, edgeface as a process (plain, without TensorFlow, or as a
daemon with a notify socket), waiting, real faults (a full disk, a read-only file), leak checks, and pictures.

A plain module, not a test file and not conftest. Test modules import helpers from here (and the fixture recipes'
names from make_fixtures.py, the test camera from mjpeg_server.py), never from another test module or from
conftest.py, which holds only fixtures: no import is there for its side effect.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import multiprocessing
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface import hangup
from edgeface.cli import main as edgeface_main
from edgeface.store import ResultLog

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"  # committed files, made by tests/make_fixtures.py
SHARED = REPO.parent / "shared"  # the project's shared data, beside the repository when it is there
YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
CLIP = SHARED / "data" / "misc" / "video" / "short_hamilton_clip.mp4"
LFW_DEV = SHARED / "data" / "lfw_dev"
needs_yunet = pytest.mark.skipif(not YUNET.is_file(), reason=f"YuNet's ONNX file is not at {YUNET}")

# What migration 11 (the quality gate's columns) added, taken away again: a log as an edgeface before the gate left it.
UNDO_GATE_COLUMNS = (
    "DROP INDEX faces_rejected; ALTER TABLE faces DROP COLUMN rejected; ALTER TABLE faces DROP COLUMN quality; "
    "ALTER TABLE appearances DROP COLUMN rejected; ALTER TABLE appearances DROP COLUMN quality; "
    "ALTER TABLE appearances DROP COLUMN rejected_frames; "
)

# -- edgeface as a process ------------------------------------------------------------------------------------

def run_edgeface(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs the edgeface command ARGS as a separate process (forked by FORKSERVER), with its output."""
    return run_forked(args, {**os.environ, **(env or {})}, timeout)


def run_without_tensorflow(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs the edgeface command as a separate process where TensorFlow and Keras cannot be imported, as on a
    device; its stderr ends with the line `HEAVY [...]`, the workstation modules that were loaded all the same."""
    return run_forked(args, dict(os.environ), timeout, without_tensorflow=True)


def run_as_a_user_would(*args: str) -> subprocess.CompletedProcess:
    """`python -m edgeface ARGS`, a new interpreter from its first line: for the checks of the entry point itself."""
    return subprocess.run([sys.executable, "-m", "edgeface", *args], capture_output=True, text=True, timeout=600)


def run_in_process(*args: str) -> subprocess.CompletedProcess:
    """Runs `edgeface ARGS` through its command line in this process, with what it prints on stdout and stderr
    (TensorFlow's own C++ log excepted), as `run_edgeface` would report it: for the workstation's train, convert and
    demo, where every child would import TensorFlow again, seconds each time, while this process has it loaded; and
    for commands that neither classify nor spawn (a usage error, a refused model, `log`), without the half second a
    process spends importing the runtime. Tests that run the command as a process keep the way from
    `python -m edgeface` to its exit code checked."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = edgeface_main(list(args))
        except SystemExit as stop:  # argparse's usage errors and --help
            code = stop.code
    return subprocess.CompletedProcess(["edgeface", *args], code, out.getvalue(), err.getvalue())


def wait_until(condition: Callable[[], bool], timeout: float = 60, interval: float = 0.01) -> None:
    """Waits for `condition`, looking every `interval` seconds (often: a kill that waits for a moment should
    not miss it by much); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(interval)


class Notifications:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self.seen: list[str] = []

    def wait_for(self, field: str, timeout: float = 60) -> str:
        """The first unread datagram containing `field` (e.g. "READY=1"), waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._socket.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self._socket.recv(4096).decode()
            except TimeoutError:
                break
            self.seen.append(message)
            if field in message:
                return message
        raise AssertionError(f"no {field} within {timeout} s; got {self.seen}")

    def drain(self) -> None:
        """Reads what arrived and was not read yet (e.g. STOPPING=1 from a daemon that has exited)."""
        self._socket.setblocking(False)
        try:
            while True:
                self.seen.append(self._socket.recv(4096).decode())
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.drain()
        self._socket.close()


# Daemons and scans that a test runs as processes are forked from a server that has imported the runtime once (its
# modules, not its state): the process is as real as `python -m edgeface`'s, and starts without the half second of
# imports. `run_edgeface` and the CLI tests keep the way through `python -m edgeface` checked.
FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["edgeface.__main__"])
WORKSTATION_MODULES = ("tensorflow", "keras", "h5py")


def edgeface_in_this_process(
    args: Sequence[str], out: Path, err: Path, env: dict, cwd: Path, without_tensorflow: bool = False
) -> None:
    """What `python -m edgeface ARGS` does, in a process forked for it: a session of its own, stdout and stderr to
    the files, the environment, the folder, then SIGHUP held and the command run (its worker processes start from
    edgeface's __main__, as they would). `without_tensorflow`: as on a device, TensorFlow and Keras cannot be
    imported, and the last line of stderr says which workstation modules were loaded all the same."""
    os.setsid()
    for path, descriptor in ((out, 1), (err, 2)):
        opened = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.dup2(opened, descriptor)
        os.close(opened)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.modules["__main__"] = sys.modules["edgeface.__main__"]
    if without_tensorflow:
        sys.modules["tensorflow"] = sys.modules["keras"] = None
    hangup.hold()
    code = edgeface_main(list(args))
    if without_tensorflow:
        heavy = sorted(name for name, module in sys.modules.items() if module and name.split(".")[0] in WORKSTATION_MODULES)
        print("HEAVY", heavy, file=sys.stderr)
    raise SystemExit(code)


def run_forked(
    args: Sequence[str], env: dict, timeout: float, without_tensorflow: bool = False
) -> subprocess.CompletedProcess:
    """The edgeface command ARGS in a process forked by FORKSERVER, in this process's working folder, waited for;
    its code, stdout and stderr."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        out.touch()
        err.touch()
        process = ForkedProcess.started(args, out, err, env, Path.cwd(), without_tensorflow)
        code = process.wait(timeout)
        return subprocess.CompletedProcess(["edgeface", *args], code, out.read_text(), err.read_text())


class ForkedProcess:
    """A process of FORKSERVER with what tests use of a `subprocess.Popen`: pid, signals, poll and wait."""

    def __init__(self, process: multiprocessing.Process) -> None:
        self._process = process
        self.pid = process.pid
        wait_until(self._in_its_own_session)

    @classmethod
    def started(
        cls, args: Sequence[str], out: Path, err: Path, env: dict, cwd: Path, without_tensorflow: bool = False
    ) -> ForkedProcess:
        """`edgeface_in_this_process` of these, started (in its own session once this returns)."""
        process = FORKSERVER.Process(target=edgeface_in_this_process, args=(args, out, err, env, cwd, without_tensorflow))
        process.start()
        return cls(process)

    def _in_its_own_session(self) -> bool:
        """Whether the child has made its session (so signals to its group reach it), or has ended already."""
        try:
            return os.getpgid(self.pid) == self.pid or self._process.exitcode is not None
        except ProcessLookupError:
            return True

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode  # as Popen's: -N when signal N ended it

    def send_signal(self, number: int) -> None:
        os.kill(self.pid, number)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(["edgeface"], timeout)
        return self.returncode


class Child:
    """An edgeface command as a process (forked by FORKSERVER; with `preexec`, which may act only when a program is
    executed, `python -m edgeface` run anew) in a session of its own, so that a signal reaches its workers too,
    with stdout and stderr in files that can be read while it runs, and its own notify socket, as systemd would run
    it. One that a test leaves running is killed by conftest's leak check, which fails the test."""

    def __init__(
        self, folder: Path, *args: str, env: dict | None = None, preexec: Callable[[], None] | None = None
    ) -> None:
        stamp = time.monotonic_ns()
        self.notifications = Notifications(folder / f"notify-{stamp}")
        self.out, self.err = folder / f"stdout-{stamp}", folder / f"stderr-{stamp}"
        self.out.touch()
        self.err.touch()
        environment = {**os.environ, "NOTIFY_SOCKET": str(self.notifications.path), **(env or {})}
        self.process: ForkedProcess | subprocess.Popen
        if preexec is None:
            self.process = ForkedProcess.started(args, self.out, self.err, environment, REPO)
            return
        with open(self.out, "w") as out, open(self.err, "w") as err:  # `preexec` may act only at exec (capabilities)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgeface", *args], stdout=out, stderr=err, env=environment, cwd=REPO,
                start_new_session=True, preexec_fn=preexec,
            )  # fmt: skip

    def stderr(self) -> str:
        return self.err.read_text()

    def printed(self) -> int:
        """Lines on stdout so far (`scan --json` prints one per image as soon as it is classified)."""
        return self.out.read_bytes().count(b"\n")

    def ready(self) -> Child:
        try:
            self.notifications.wait_for("READY=1")
        except AssertionError:
            self.kill()
            raise AssertionError(f"not ready: {self.stderr()}") from None
        return self

    def signal(self, number: int) -> None:
        """Sends `number` to the whole process group (SIGSTOP, SIGCONT, SIGKILL reach the workers too)."""
        os.killpg(self.process.pid, number)

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM, as systemd stops a service; the exit code and stderr."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        self.notifications.close()
        return self.process.returncode, self.stderr()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Waits for a child that ends by itself (a camera daemon at the end of its video); the exit code and
        stderr."""
        self.process.wait(timeout=timeout)
        self.notifications.close()
        return self.process.returncode, self.stderr()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.signal(signal.SIGKILL)
        self.process.wait()
        self.notifications.close()


# -- leaks: threads and processes a test leaves running -------------------------------------------------------


def live_descendants(pid: int) -> list[int]:
    """The processes below `pid` (children, theirs, and so on) that are still running, read from /proc: a
    zombie (exited, not yet waited for) is not running."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                state, parent = stat.read().rsplit(b")", 1)[1].split()[:2]
        except OSError:  # it exited while we looked
            continue
        if state not in b"ZX":
            parents.setdefault(int(parent), []).append(int(name))
    found, waiting = [], list(parents.get(pid, []))
    while waiting:
        child = waiting.pop()
        found.append(child)
        waiting += parents.get(child, [])
    return found


# The processes a test may start and leave, children of pytest's own process: multiprocessing's resource tracker
# (started with the first worker pool, kept for the interpreter's life on purpose: it cleans up after every pool),
# and the forkserver that helpers.Child forks edgeface from. What the forkserver forks shows the same command line,
# but is its child, not pytest's, and counts.
SESSION_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def session_helper(pid: int) -> bool:
    """Whether `pid` is one of SESSION_HELPERS: started by pytest's process itself, with such a command line."""
    return parent_of(pid) == os.getpid() and any(helper in command_line(pid) for helper in SESSION_HELPERS)


def parent_of(pid: int) -> int | None:
    """The parent process of `pid`, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except OSError:
        return None


def command_line(pid: int) -> str:
    """The command line of process `pid`, or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def kill_processes(pids: list[int]) -> None:
    """SIGKILLs every process in `pids`, and reaps those that are this process's children."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def threads_left(before: set[threading.Thread], grace: float) -> list[threading.Thread]:
    """Threads started since `before` that are still alive after waiting up to `grace` seconds for them to end."""
    deadline = time.monotonic() + grace
    left = []
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            left.append(thread)
    return left


# -- faults made for real -------------------------------------------------------------------------------------

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2  # from <linux/prctl.h>, <linux/capability.h>


def as_an_ordinary_user() -> None:
    """Runs in the child before edgeface starts: root gives up the capabilities that let it ignore file permissions,
    so that a read-only file is read-only to it as well (an ordinary user needs nothing). Not a switch to another
    user: the interpreter may live where only root can reach it."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0):
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def tmpfs_disk(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "2m") under `tmp_path`: a disk that really fills up. Skips the test where it cannot
    be mounted. Unmounted lazily afterwards: a daemon a failed test left running (conftest's leak check kills it)
    would keep it busy."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True,
                           text=True)  # fmt: skip
    if mount.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mount.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Writes a file that takes every free byte of `disk`; returns it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as file:
        try:
            while True:
                file.write(bytes(4096))
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return filler


def restore_read_only(db: Path) -> None:
    """Puts a read-only log (empty, as a backup taken before) in place of `db`, as a restore
    from a read-only medium would. The live log's -wal and -shm go too, as they must: SQLite would replay the old
    log's WAL into the restored file when it is next opened."""
    backup = db.with_name("backup.db")
    ResultLog(backup).close()
    backup.chmod(0o444)
    for path in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink()
    backup.rename(db)


def check_log(db: Path) -> dict[str, str]:
    """path -> status of every input in the log at `db`, after checking what no crash may break: SQLite's integrity,
    one outcome per path, and every input whole (here a photo has exactly one face, a broken file none)."""
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = connection.execute(
            "SELECT i.path, i.status, count(f.id) FROM inputs i LEFT JOIN faces f ON f.input_id = i.id GROUP BY i.id"
        ).fetchall()
    paths = [path for path, _, _ in rows]
    assert len(paths) == len(set(paths)), "an input has two outcomes"
    assert all(faces == (status == "done") for _, status, faces in rows), f"an input is not whole: {rows}"
    return {path: status for path, status, _ in rows}


# -- models and pictures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classifier:
    """The committed face / not-face model (32×32 grey, detector `none`: every picture is one face) and the
    held-out lfw_subset patches it never saw, as (path, label), in held_out/<label>/."""

    tflite_file: Path
    held_out_folder: Path
    held_out: list[tuple[Path, str]]


def astronaut() -> np.ndarray:
    """scikit-image's astronaut (committed as tests/fixtures/astronaut.jpg), 512×512 BGR: one real face."""
    return cv2.imread(str(FIXTURES / "astronaut.jpg"))


def three_faces() -> np.ndarray:
    """The astronaut's face three times, 70, 110 and 160 pixels wide, on grey: the cascade finds three faces,
    about 40, 61 and 83 pixels wide."""
    face = astronaut()[0:220, 120:300]
    canvas = np.full((260, 560, 3), 128, np.uint8)
    left = 10
    for width in (70, 110, 160):
        height = round(width * 220 / 180)
        canvas[10 : 10 + height, left : left + width] = cv2.resize(face, (width, height), interpolation=cv2.INTER_AREA)
        left += width + 20
    return canvas


def skimage_bgr(name: str) -> np.ndarray:
    """One of scikit-image's bundled pictures as H×W×3 uint8 BGR; skips the test where scikit-image is absent
    (the device tier)."""
    data = pytest.importorskip("skimage.data")
    picture = getattr(data, name)()
    if picture.ndim == 2:
        return cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(picture[..., :3], cv2.COLOR_RGB2BGR)


def photo(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 150×150 BGR photo of a 25×25 grey face: enlarged to dlib's chip, with its own light and noise, as photos
    of one person in one place differ."""
    big = cv2.resize(face, (150, 150), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    lit = big * (1 + 0.15 * rng.uniform(-1, 1)) + 20 * rng.uniform(-1, 1) + rng.normal(0, 3, big.shape)
    return cv2.cvtColor(np.clip(lit, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def write_photos(folder: Path, face: np.ndarray, count: int, rng: np.random.Generator, prefix: str = "") -> list[Path]:
    """`count` photos of `face` as PNG files in `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{i:02d}.png" for i in range(count)]
    for path in paths:
        cv2.imwrite(str(path), photo(face, rng))
    return paths


def jpeg_with_orientation(pixels_bgr: np.ndarray, orientation: int) -> bytes:
    """A JPEG of `pixels_bgr` as stored, whose EXIF says to show it turned (6: 90° clockwise), as a camera writes it:
    an APP1 segment holding a little-endian TIFF directory with the one Orientation tag."""
    jpeg = cv2.imencode(".jpg", pixels_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    tag = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)  # Orientation, SHORT, one value, left-justified
    exif = b"Exif\0\0" + b"II*\0" + struct.pack("<IH", 8, 1) + tag + struct.pack("<I", 0)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]


def extended_webp(pixels_bgra: np.ndarray) -> bytes:
    """A lossless WebP of `pixels_bgra` in the extended layout (a VP8X chunk with the alpha flag first), as Pillow
    writes a picture with transparency; OpenCV writes only the simple layout, whose VP8L chunk this one holds."""
    simple = cv2.imencode(".webp", pixels_bgra, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    height, width = pixels_bgra.shape[:2]
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + bytes([0x10, 0, 0, 0]) + canvas + simple[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def flatbuffer_of(model: Path) -> bytes:
    """The TFLite flatbuffer of the model file at `model`, without the metadata archive edgeface appends."""
    content = model.read_bytes()
    with zipfile.ZipFile(model) as bundle:
        return content[: bundle.infolist()[0].header_offset]


def lfw_face(number: int) -> np.ndarray:
    """lfw_subset's face `number` (0-19: those committed as held-out patches), 25×25 grey uint8."""
    return cv2.imread(str(FIXTURES / "held_out" / "face" / f"{number:03d}.png"), cv2.IMREAD_GRAYSCALE)


# -- edgeface's commands several at once ----------------------------------------------------------------------


def run_edgeface_together(
    *commands: Sequence[str], runner: Callable[..., subprocess.CompletedProcess] = run_edgeface
) -> list[subprocess.CompletedProcess]:
    """`runner(*command)` (`run_edgeface`, or `run_without_tensorflow`) for each of `commands` at the same time, for
    checks that do not depend on each other; the results in the order of `commands`. Each process spends about half
    a second importing the runtime, time the cores can share."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda command: runner(*command), commands))
