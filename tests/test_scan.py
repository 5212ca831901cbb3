"""`edgeface scan` over real folders: formats, recursion, symlink loops, unreadable folders,
and `edgeface log` reading the result back."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import cv2
import pytest

from edgeface.scan import ScanSummary, image_paths
from helpers import Classifier, run_edgeface, run_edgeface_together, run_in_process, three_faces

FORMATS = ("a.JPG", "b.jpeg", "c.Png", "d.BMP", "e.webp", "f.TIFF", "g.pgm", "h.ppm")


@pytest.fixture()
def photo_tree(classifier: Classifier, tmp_path: Path) -> Path:
    """photos/ with one face crop in each format, a text file, and nested/ with one more face."""
    face = cv2.imread(str(classifier.held_out[0][0]))
    root = tmp_path / "photos"
    (root / "nested" / "deeper").mkdir(parents=True)
    for name in FORMATS:
        pixels = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY) if name.endswith(".pgm") else face
        assert cv2.imwrite(str(root / name.lower()), pixels)
        (root / name.lower()).rename(root / name)
    cv2.imwrite(str(root / "nested" / "deeper" / "i.png"), face)
    (root / "notes.txt").write_text("not an image")
    return root


def scan_args(classifier: Classifier, db: Path, *args: str) -> list[str]:
    """The arguments of `edgeface scan ARGS --json` with one worker unless ARGS say otherwise: a pool of spawned
    workers costs half a second, and test_two_workers_give_exactly_what_one_gives shows that it gives what one worker
    gives."""
    return ["scan", "--workers", "1", *args, "--model", str(classifier.tflite_file), "--db", str(db), "--json"]


def scan(classifier: Classifier, db: Path, *args: str) -> subprocess.CompletedProcess:
    """`edgeface scan ARGS --json` (see `scan_args`) as a process."""
    return run_edgeface(*scan_args(classifier, db, *args))


def scanned_names(run: subprocess.CompletedProcess) -> list[str]:
    return sorted(Path(json.loads(line)["path"]).name for line in run.stdout.splitlines())


def test_every_format_in_any_case_and_other_files_counted(classifier: Classifier, photo_tree: Path, tmp_path: Path):
    run = scan(classifier, tmp_path / "log.db", str(photo_tree))
    assert run.returncode == 0, run.stderr
    assert scanned_names(run) == sorted(FORMATS)
    assert all(json.loads(line)["faces"] for line in run.stdout.splitlines())
    assert "1 other files skipped" in run.stderr


def test_recursive_scans_sub_folders(classifier: Classifier, photo_tree: Path, tmp_path: Path):
    run = scan(classifier, tmp_path / "log.db", str(photo_tree), "--recursive")
    assert run.returncode == 0, run.stderr
    assert scanned_names(run) == sorted([*FORMATS, "i.png"])


def test_a_linked_folder_is_reported_not_followed(classifier: Classifier, photo_tree: Path, tmp_path: Path):
    os.symlink(photo_tree, photo_tree / "nested" / "back-to-top")  # a loop, were it followed
    run = scan(classifier, tmp_path / "log.db", str(photo_tree), "--recursive")
    assert run.returncode == 1
    assert "linked folder, not followed" in run.stderr and "back-to-top" in run.stderr
    assert scanned_names(run) == sorted([*FORMATS, "i.png"])  # each file once


def walk_as_nobody(top: Path) -> tuple[list[str], ScanSummary]:
    """`image_paths(top, recursive)` in a forked child that runs as nobody, where permissions apply
    (root ignores them). Everything is imported before the fork: Python lives under /root here."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.setgid(65534)
            os.setuid(65534)
            summary = ScanSummary()
            found = list(image_paths([str(top)], True, summary))
            os.write(writer, json.dumps([found, summary.problems, summary.skipped]).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        found, problems, skipped = json.loads(pipe.read())
    os.waitpid(child, 0)
    return found, ScanSummary(problems=problems, skipped=skipped)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
def test_an_unreadable_folder_is_reported_and_the_rest_walked(tmp_path: Path):
    top = Path("/tmp") / f"edgeface-perm-{os.getpid()}"
    shutil.rmtree(top, ignore_errors=True)
    (top / "locked").mkdir(parents=True)
    (top / "open.png").write_bytes(b"")
    (top / "locked" / "hidden.png").write_bytes(b"")
    os.chmod(top, 0o755)
    os.chmod(top / "locked", 0o700)  # root's only
    try:
        found, summary = walk_as_nobody(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert found == [str(top / "open.png")]
    assert summary.problems == [f"cannot read folder {top / 'locked'}: Permission denied"]


def test_log_shows_filters_and_summarises(classifier: Classifier, tmp_path: Path):
    """`log` runs as a process once; its filters and formats run in this process (`run_in_process`)."""
    db = tmp_path / "log.db"
    folder = classifier.held_out_folder
    assert scan(classifier, db, str(folder / "face"), str(folder / "not-face")).returncode == 0
    recent = run_edgeface("log", "--db", str(db), "--limit", "5", "--json")
    assert recent.returncode == 0, recent.stderr
    rows = [json.loads(line) for line in recent.stdout.splitlines()]
    assert len(rows) == 5 and rows[0]["time"] >= rows[-1]["time"]
    faces = run_in_process("log", "--db", str(db), "--label", "face", "--limit", "1000", "--csv")
    lines = faces.stdout.splitlines()
    assert lines[0].startswith("time,source,path,status,error,label,confidence,unknown")
    with sqlite3.connect(db) as connection:
        expected = connection.execute("SELECT count(*) FROM faces WHERE label = 'face' AND unknown = 0").fetchone()[0]
    assert len(lines) - 1 == expected  # faces accepted as `face`; not the unknown ones it was only the nearest guess of
    summary = run_in_process("log", "--db", str(db), "--summary", "--json")
    counts = [json.loads(line) for line in summary.stdout.splitlines()]
    assert sum(row["faces"] for row in counts) == 40 and {row["label"] for row in counts} <= {"face", "not-face"}
    assert run_in_process("log", "--db", str(db), "--since", "1h", "--json").stdout.count("\n") == 40
    assert run_in_process("log", "--db", str(db), "--until", "1h", "--json").stdout == ""
    assert "nothing in the log matches" in run_in_process("log", "--db", str(db), "--unknown").stdout
    table = run_in_process("log", "--db", str(db), "--source", "scan", "--limit", "3")
    assert table.stdout.splitlines()[0].split()[:3] == ["time", "source", "path"]


def test_log_refuses_a_bad_time_and_a_missing_file(tmp_path: Path):
    missing = run_in_process("log", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no log at" in missing.stderr
    sqlite3.connect(tmp_path / "empty.db").close()
    bad = run_in_process("log", "--db", str(tmp_path / "empty.db"), "--since", "last tuesday")
    assert bad.returncode == 2 and "is not a time" in bad.stderr


def logged_rows(db: Path) -> list[tuple]:
    """Every input in the log at `db` with its faces, in the order they were logged."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT i.path, i.sha256, i.status, f.x, f.y, f.w, f.h, f.label, f.confidence, f.unknown "
            "FROM inputs i LEFT JOIN faces f ON f.input_id = i.id ORDER BY i.id, f.id"
        ).fetchall()


def test_two_workers_give_exactly_what_one_gives(classifier: Classifier, photo_tree: Path, tmp_path: Path):
    paths = (str(photo_tree), str(classifier.held_out_folder), "--recursive")
    serial, parallel = run_edgeface_together(*(scan_args(classifier, tmp_path / f"log-{workers}.db", *paths,
                                                         "--workers", workers) for workers in ("1", "2")))  # fmt: skip
    assert serial.returncode == 0, serial.stderr
    assert parallel.returncode == 0, parallel.stderr
    assert parallel.stdout == serial.stdout
    serial_rows = logged_rows(tmp_path / "log-1.db")
    assert logged_rows(tmp_path / "log-2.db") == serial_rows
    assert len(serial_rows) == len(FORMATS) + 1 + 40


def test_min_face_and_max_faces_override_the_model(classifier: Classifier, tmp_path: Path):
    picture = tmp_path / "three.png"
    cv2.imwrite(str(picture), three_faces())  # faces about 40, 61 and 83 pixels wide to the cascade
    args = (str(picture), "--detector", "haar", "--rescan")
    runs = [scan(classifier, tmp_path / "l.db", *args)]
    for limited in ("l-max.db", "l-min.db"):  # each limit classifies the logged photo again, in a log of its own
        shutil.copy(tmp_path / "l.db", tmp_path / limited)
    runs += run_edgeface_together(scan_args(classifier, tmp_path / "l-max.db", *args, "--max-faces", "2"),
                                  scan_args(classifier, tmp_path / "l-min.db", *args, "--min-face", "60"))  # fmt: skip
    widths = []
    for run in runs:
        assert run.returncode == 0, run.stderr
        widths.append(sorted(face["box"][2] for face in json.loads(run.stdout)["faces"]))
    assert len(widths[0]) == 3 and widths[1] == widths[0][1:]  # the two largest
    assert len(widths[2]) == 2 and min(widths[2]) >= 60
    refused = run_in_process(*scan_args(classifier, tmp_path / "l.db", str(picture), "--min-face", "0"))
    assert refused.returncode == 2 and "--min-face" in refused.stderr


def test_forget_a_label_then_a_rescan_does_not_bring_it_back(classifier: Classifier, tmp_path: Path):
    db = tmp_path / "l.db"
    photos = [str(path) for path, _ in classifier.held_out[:4] + classifier.held_out[-4:]]  # faces, then not-faces
    assert scan(classifier, db, *photos).returncode == 0
    forget = run_edgeface("forget", "--label", "face", "--guesses", "--db", str(db), "--json")
    assert forget.returncode == 0, forget.stderr
    forgotten = json.loads(forget.stdout)["inputs"]
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM faces WHERE label = 'face'").fetchone() == (0,)
        left = connection.execute("SELECT count(*) FROM inputs").fetchone()[0]
    assert forgotten >= 1 and left == 8 - forgotten
    again = run_edgeface("scan", *photos, "--model", str(classifier.tflite_file), "--db", str(db), "--workers", "1")
    assert f"{forgotten + left} already in the log" in again.stderr  # forgotten content is not classified again
    assert run_in_process("forget", "--db", str(db)).returncode == 2
