"""Crash safety on real processes: `edgeface scan` and `edgeface watch` killed with SIGKILL at random moments,
and power cuts simulated by freezing the daemon and copying its files. Afterwards every input has exactly one
outcome, none is lost or logged twice, and SQLite's integrity check passes.

A killed process leaves its files as the kernel holds them; the next start must make sense of them. Each check
after a kill reads a copy of the log files, so the next start meets them untouched, as a restart would.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import REPO, Trained, run_edgeface
from edgeface.store import ResultLog
from test_watch import Notifications

NEW_PER_RUN = 60  # scan: files added before each run, so that every kill finds work (committed 32 at a time)
CUTS = 4  # simulated power cuts in one run of the daemon


class Child:
    """`python -m edgeface ARGS` in a session of its own, so that a signal reaches its workers too, with stdout and
    stderr in files that can be read while it runs, and its own notify socket. `preexec` runs in the child first."""

    started: list[Child] = []

    def __init__(
        self, folder: Path, *args: str, env: dict | None = None, preexec: Callable[[], None] | None = None
    ) -> None:
        stamp = time.monotonic_ns()
        self.notifications = Notifications(folder / f"notify-{stamp}")
        self.out, self.err = folder / f"stdout-{stamp}", folder / f"stderr-{stamp}"
        environment = {**os.environ, "NOTIFY_SOCKET": str(self.notifications.path), **(env or {})}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgeface", *args], stdout=out, stderr=err, env=environment, cwd=REPO,
                start_new_session=True, preexec_fn=preexec,
            )  # fmt: skip
        Child.started.append(self)

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

    def stop(self) -> tuple[int, str]:
        """SIGTERM, as systemd stops a service; the exit code and stderr."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self.notifications.close()
        return self.process.returncode, self.stderr()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.signal(signal.SIGKILL)
        self.process.wait()
        self.notifications.close()

    @classmethod
    def kill_all(cls) -> None:
        while cls.started:
            child = cls.started.pop()
            if child.process.poll() is None:
                child.kill()


@pytest.fixture(autouse=True)
def no_child_left_behind() -> Iterator[None]:
    yield
    Child.kill_all()


@pytest.fixture()
def photos(trained: Trained) -> list[bytes]:
    """The encoded bytes of the 40 held-out PNGs: real images, each exactly one face for the model's detector."""
    return [path.read_bytes() for path, _ in trained.held_out]


def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Waits for `condition`, looking often: a kill that waits for a moment should not miss it by much."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def drop(folder: Path, number: int, photos: list[bytes], rng: random.Random) -> str:
    """Writes input `number` into `folder`: a photo, or now and then a broken .jpg; returns its name."""
    if rng.random() < 0.15:
        name, data = f"{number:04d}.jpg", b"not a picture"
    else:
        name, data = f"{number:04d}.png", photos[number % len(photos)]
    (folder / name).write_bytes(data)
    return name


def expected_status(name: str) -> str:
    return "error" if name.endswith(".jpg") else "done"


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


def log_files(db: Path) -> list[Path]:
    return [path for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if path.exists()]


def check_left_behind(db: Path, scratch: Path) -> dict[str, str]:
    """`check_log` on a copy of the log files as a stop left them, opened by edgeface first (as a restart would)."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    for path in log_files(db):
        shutil.copy2(path, scratch / path.name)
    copy = scratch / db.name
    if copy.exists():
        ResultLog(copy).close()
    return check_log(copy)


def progress(db: Path) -> tuple[int, int]:
    """How many inputs have an outcome, and how many are still pending, in the log at `db`."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute("SELECT (SELECT count(*) FROM inputs), (SELECT count(*) FROM pending)").fetchone()


def placement(folders: dict[str, Path]) -> dict[str, set[str]]:
    """name -> the folders ("inbox", "done", "failed") that hold it. A name twice must be a move cut short: the same
    file linked in the inbox and in one target. A renamed second copy (`0001.1.png`) is a duplicate: none allowed."""
    places: dict[str, set[str]] = {}
    inodes: dict[str, set[int]] = {}
    for place, folder in folders.items():
        for path in folder.iterdir() if folder.exists() else ():
            assert not re.search(r"\.\d+\.(png|jpg)$", path.name), f"a duplicate: {path}"
            places.setdefault(path.name, set()).add(place)
            inodes.setdefault(path.name, set()).add(path.stat().st_ino)
    for name, where in places.items():
        assert len(where) == 1 or (len(where) == 2 and "inbox" in where and len(inodes[name]) == 1), (name, where)
    return places


def check_files(folders: dict[str, Path], names: list[str], logged: dict[str, str]) -> None:
    """Every written file is somewhere, and one moved out of the inbox has its outcome in `logged`, the right one."""
    places = placement(folders)
    assert set(places) == set(names), "a file vanished"
    by_name = {os.path.basename(path): status for path, status in logged.items()}
    for name, where in places.items():
        for target, status in (("done", "done"), ("failed", "error")):
            if target in where:
                assert by_name.get(name) == status, f"{name} moved to {target} without its outcome"


def moved(folders: dict[str, Path]) -> int:
    """Files in done/ and failed/ so far."""
    return sum(len(list(folders[target].iterdir())) for target in ("done", "failed") if folders[target].exists())


def watch_args(trained: Trained, tmp_path: Path) -> tuple[dict[str, Path], Path, list[str]]:
    """The folders, the log and the `watch` arguments of a daemon that moves what it logged."""
    folders = {name: tmp_path / name for name in ("inbox", "done", "failed")}
    folders["inbox"].mkdir()
    db = tmp_path / "log.db"
    args = ["watch", str(folders["inbox"]), "--model", str(trained.tflite_file), "--db", str(db),
            "--move-done", str(folders["done"]), "--move-failed", str(folders["failed"])]  # fmt: skip
    return folders, db, args


def finish(tmp_path: Path, args: list[str], folders: dict[str, Path], db: Path, names: list[str]) -> None:
    """Starts the daemon and lets it finish: each file exactly one outcome, moved to done/ or failed/ exactly once."""
    daemon = Child(tmp_path, *args).ready()
    inbox = folders["inbox"]
    until(lambda: progress(db)[0] >= len(names) and progress(db)[1] == 0 and not any(inbox.iterdir()))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert check_log(db) == {os.path.join(inbox, name): expected_status(name) for name in names}
    places = placement(folders)
    assert places == {name: {"done" if expected_status(name) == "done" else "failed"} for name in names}


@pytest.mark.parametrize(
    "workers, kills",
    [(1, 6), (2, 6), pytest.param(1, 40, marks=pytest.mark.slow), pytest.param(2, 40, marks=pytest.mark.slow)],
)
def test_a_scan_killed_at_random_moments_ends_with_one_outcome_per_file(
    trained: Trained, photos: list[bytes], tmp_path: Path, workers: int, kills: int
):
    """Each run is killed while it starts (the model, the log, the listing, the hashes) or after a random number of
    results: in a batch, between batches, or while it commits one. The log left behind is whole and keeps every
    outcome committed before; a last run completes it: one outcome per file."""
    rng = random.Random(workers * 1000 + kills)
    folder = tmp_path / "photos"
    folder.mkdir()
    db = tmp_path / "log.db"
    args = ["scan", str(folder), "--model", str(trained.tflite_file), "--db", str(db), "--json",
            "--workers", str(workers)]  # fmt: skip
    names: list[str] = []
    logged: dict[str, str] = {}
    for _ in range(kills):
        names += [drop(folder, len(names) + i, photos, rng) for i in range(NEW_PER_RUN)]
        scan = Child(tmp_path, *args)
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0, 0.5))
        else:
            printed = rng.randint(1, len(names) - len(logged))
            until(lambda: scan.process.poll() is not None or scan.printed() >= printed)
        scan.kill()
        earlier, logged = logged, check_left_behind(db, tmp_path / "left")
        assert earlier.items() <= logged.items(), "a committed outcome was lost or changed"
    final = run_edgeface(*args)
    assert final.returncode in (0, 1), final.stderr  # 1 when it was left broken files to fail
    assert check_log(db) == {str(folder / name): expected_status(name) for name in names}


@pytest.mark.parametrize("rounds", [12, pytest.param(60, marks=pytest.mark.slow)])
def test_the_daemon_killed_at_random_moments_logs_and_moves_every_file_once(
    trained: Trained, photos: list[bytes], tmp_path: Path, rounds: int
):
    """Each round drops a burst of files and kills the daemon after a random time, or as soon as a random number of
    them was moved, so that kills fall in reads, commits and moves. After each kill the log is whole and every file
    that left the inbox has its outcome; at the end each file has exactly one outcome and sits once in done/ or
    failed/."""
    folders, db, args = watch_args(trained, tmp_path)
    rng = random.Random(rounds)
    names: list[str] = []
    for _ in range(rounds):
        daemon = Child(tmp_path, *args).ready()
        already = moved(folders)
        names += [drop(folders["inbox"], len(names) + i, photos, rng) for i in range(rng.randint(5, 40))]
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0, 0.2))
        else:
            target = rng.randint(already, len(names) - 1)
            until(lambda: moved(folders) >= target)
        daemon.kill()
        check_files(folders, names, check_left_behind(db, tmp_path / "left"))
    finish(tmp_path, args, folders, db, names)


def test_a_power_cut_leaves_files_that_edgeface_opens_and_a_restart_completes(
    trained: Trained, photos: list[bytes], tmp_path: Path
):
    """A power cut, simulated: at random moments while the daemon works through bursts of files, it is frozen
    (SIGSTOP), its log files and folders are copied as they are at that instant (hard links kept: a move cut short
    is one file in two folders) and it runs on. A copy is what a cut at that instant leaves when every write the
    kernel had accepted reached the disk; losing the writes that had not is SQLite's part, which the daemon relies
    on by committing with synchronous=FULL before it moves a file.

    Each copy opens in edgeface with its integrity intact and every input whole, and every file it shows moved has
    its outcome. Then each copy is put back at the same paths, as the machine would find it on the next boot, and a
    daemon started on it ends with every file logged and moved exactly once.
    """
    folders, db, args = watch_args(trained, tmp_path)
    rng = random.Random(7)
    names: list[str] = []
    cuts: list[tuple[Path, list[str]]] = []
    daemon = Child(tmp_path, *args).ready()
    for cut in range(CUTS):
        already = moved(folders)
        names += [drop(folders["inbox"], len(names) + i, photos, rng) for i in range(rng.randint(10, 40))]
        target = rng.randint(already, len(names) - 1)
        until(lambda: moved(folders) >= target)
        daemon.signal(signal.SIGSTOP)
        copy = tmp_path / f"cut{cut}"
        copy.mkdir()
        state = [folder for folder in folders.values() if folder.exists()] + log_files(db)
        subprocess.run(["cp", "-a", *map(str, state), str(copy)], check=True)
        daemon.signal(signal.SIGCONT)
        cuts.append((copy, list(names)))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    for copy, written in cuts:
        copied = {name: copy / name for name in folders}
        check_files(copied, written, check_left_behind(copy / db.name, tmp_path / "left"))
    for copy, written in cuts:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        for path in log_files(db):
            path.unlink()
        subprocess.run(["cp", "-a", f"{copy}/.", str(tmp_path)], check=True)
        finish(tmp_path, args, folders, db, written)


def test_a_move_cut_short_is_finished_without_a_second_copy(trained: Trained, photos: list[bytes], tmp_path: Path):
    """The moment random kills almost never hit: a move is a hard link and an unlink, and a stop between the two
    leaves one file in both folders, its outcome committed. The next start takes it out of the inbox and makes no
    `name.1.png`."""
    folders, db, args = watch_args(trained, tmp_path)
    photo = folders["inbox"] / "0000.png"
    photo.write_bytes(photos[0])
    earlier = time.time() - 3600
    os.utime(photo, (earlier, earlier))  # settled: the listing at start takes it at once
    finish(tmp_path, args, folders, db, [photo.name])
    os.link(folders["done"] / photo.name, photo)  # the state between the link and the unlink
    check_files(folders, [photo.name], check_log(db))
    finish(tmp_path, args, folders, db, [photo.name])
