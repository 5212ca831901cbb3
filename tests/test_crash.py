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
import time
from pathlib import Path

import pytest

from edgeface.store import ResultLog
from helpers import Child, Classifier, check_log, run_edgeface, wait_until

NEW_PER_RUN = 60  # scan: files added before each run, so that every kill finds work (committed 32 at a time)


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


def watch_args(classifier: Classifier, tmp_path: Path) -> tuple[dict[str, Path], Path, list[str]]:
    """The folders, the log and the `watch` arguments of a daemon that moves what it logged."""
    folders = {name: tmp_path / name for name in ("inbox", "done", "failed")}
    folders["inbox"].mkdir()
    db = tmp_path / "log.db"
    # A restart lists the inbox and leaves files younger than --settle for a second look (they may be half written):
    # 0.3 s instead of 2 lets each restart take what the last run left sooner.
    args = ["watch", str(folders["inbox"]), "--model", str(classifier.tflite_file), "--db", str(db),
            "--move-done", str(folders["done"]), "--move-failed", str(folders["failed"]), "--settle", "0.3"]  # fmt: skip
    return folders, db, args


def finish(tmp_path: Path, args: list[str], folders: dict[str, Path], db: Path, names: list[str]) -> None:
    """Starts the daemon and lets it finish: each file exactly one outcome, moved to done/ or failed/ exactly once."""
    daemon = Child(tmp_path, *args).ready()
    inbox = folders["inbox"]
    wait_until(lambda: progress(db)[0] >= len(names) and progress(db)[1] == 0 and not any(inbox.iterdir()))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert check_log(db) == {os.path.join(inbox, name): expected_status(name) for name in names}
    places = placement(folders)
    assert places == {name: {"done" if expected_status(name) == "done" else "failed"} for name in names}


@pytest.mark.parametrize(
    "workers",  # the workers of each killed run; the last run has the first one's
    [
        pytest.param((2, 1), id="2-then-1"),  # by default one kill of each kind (a scan start costs about a second)
        pytest.param((1,) * 40, id="1x40", marks=pytest.mark.slow),
        pytest.param((2,) * 40, id="2x40", marks=pytest.mark.slow),
    ],
)
def test_a_scan_killed_at_random_moments_ends_with_one_outcome_per_file(
    classifier: Classifier, photos: list[bytes], tmp_path: Path, workers: tuple[int, ...]
):
    """Each run is killed while it starts (the model, the log, the listing, the hashes) or after a random number of
    results: in a batch, between batches, or while it commits one. The log left behind is whole and keeps every
    outcome committed before; a last run completes it: one outcome per file."""
    rng = random.Random(workers[0] * 1000 + len(workers))
    folder = tmp_path / "photos"
    folder.mkdir()
    db = tmp_path / "log.db"
    args = ["scan", str(folder), "--model", str(classifier.tflite_file), "--db", str(db), "--json", "--workers"]
    names: list[str] = []
    logged: dict[str, str] = {}
    for count in workers:
        names += [drop(folder, len(names) + i, photos, rng) for i in range(NEW_PER_RUN)]
        scan = Child(tmp_path, *args, str(count))
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0, 0.5))
        else:
            printed = rng.randint(1, len(names) - len(logged))
            wait_until(lambda: scan.process.poll() is not None or scan.printed() >= printed)
        scan.kill()
        earlier, logged = logged, check_left_behind(db, tmp_path / "left")
        assert earlier.items() <= logged.items(), "a committed outcome was lost or changed"
    final = run_edgeface(*args, str(workers[0]))
    assert final.returncode in (0, 1), final.stderr  # 1 when it was left broken files to fail
    assert check_log(db) == {str(folder / name): expected_status(name) for name in names}


# Four rounds by default (each a daemon start): two kills after a random time, two after a random number of moves;
# the slow run's 60 fall everywhere.
@pytest.mark.parametrize("rounds", [4, pytest.param(60, marks=pytest.mark.slow)])
def test_the_daemon_killed_at_random_moments_logs_and_moves_every_file_once(
    classifier: Classifier, photos: list[bytes], tmp_path: Path, rounds: int
):
    """Each round drops a burst of files and kills the daemon after a random time, or as soon as a random number of
    them was moved, so that kills fall in reads, commits and moves. After each kill the log is whole and every file
    that left the inbox has its outcome; at the end each file has exactly one outcome and sits once in done/ or
    failed/."""
    folders, db, args = watch_args(classifier, tmp_path)
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
            wait_until(lambda: moved(folders) >= target)
        daemon.kill()
        check_files(folders, names, check_left_behind(db, tmp_path / "left"))
    finish(tmp_path, args, folders, db, names)


# One cut by default (each costs a restart to complete it); the slow run's 8 fall at other moments.
@pytest.mark.parametrize("power_cuts", [1, pytest.param(8, marks=pytest.mark.slow)])
def test_a_power_cut_leaves_files_that_edgeface_opens_and_a_restart_completes(
    classifier: Classifier, photos: list[bytes], tmp_path: Path, power_cuts: int
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
    folders, db, args = watch_args(classifier, tmp_path)
    rng = random.Random(7)
    names: list[str] = []
    cuts: list[tuple[Path, list[str]]] = []
    daemon = Child(tmp_path, *args).ready()
    for cut in range(power_cuts):
        already = moved(folders)
        names += [drop(folders["inbox"], len(names) + i, photos, rng) for i in range(rng.randint(10, 40))]
        target = rng.randint(already, len(names) - 1)
        wait_until(lambda: moved(folders) >= target)
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


def test_a_move_cut_short_is_finished_without_a_second_copy(
    classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    """The moment random kills almost never hit: a move is a hard link and an unlink, and a stop between the two
    leaves one file in both folders, its outcome committed. The next start takes it out of the inbox and makes no
    `name.1.png`."""
    folders, db, args = watch_args(classifier, tmp_path)
    photo = folders["inbox"] / "0000.png"
    photo.write_bytes(photos[0])
    earlier = time.time() - 3600
    os.utime(photo, (earlier, earlier))  # settled: the listing at start takes it at once
    finish(tmp_path, args, folders, db, [photo.name])
    os.link(folders["done"] / photo.name, photo)  # the state between the link and the unlink
    check_files(folders, [photo.name], check_log(db))
    finish(tmp_path, args, folders, db, [photo.name])
