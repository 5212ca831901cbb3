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

from conftest import Trained, run_edgeface, skimage_bgr
from edgeface.scan import ScanSummary, image_paths

FORMATS = ("a.JPG", "b.jpeg", "c.Png", "d.BMP", "e.webp", "f.TIFF", "g.pgm", "h.ppm")


@pytest.fixture()
def photo_tree(trained: Trained, tmp_path: Path) -> Path:
    """photos/ with one face crop in each format, a text file, and nested/ with one more face."""
    face = cv2.imread(str(trained.held_out[0][0]))
    root = tmp_path / "photos"
    (root / "nested" / "deeper").mkdir(parents=True)
    for name in FORMATS:
        pixels = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY) if name.endswith(".pgm") else face
        assert cv2.imwrite(str(root / name.lower()), pixels)
        (root / name.lower()).rename(root / name)
    cv2.imwrite(str(root / "nested" / "deeper" / "i.png"), face)
    (root / "notes.txt").write_text("not an image")
    return root


def scan(trained: Trained, db: Path, *args: str) -> subprocess.CompletedProcess:
    return run_edgeface("scan", *args, "--model", str(trained.tflite_file), "--db", str(db), "--json")


def scanned_names(run: subprocess.CompletedProcess) -> list[str]:
    return sorted(Path(json.loads(line)["path"]).name for line in run.stdout.splitlines())


def test_every_format_in_any_case_and_other_files_counted(trained: Trained, photo_tree: Path, tmp_path: Path):
    run = scan(trained, tmp_path / "log.db", str(photo_tree))
    assert run.returncode == 0, run.stderr
    assert scanned_names(run) == sorted(FORMATS)
    assert all(json.loads(line)["faces"] for line in run.stdout.splitlines())
    assert "1 other files skipped" in run.stderr


def test_recursive_scans_sub_folders(trained: Trained, photo_tree: Path, tmp_path: Path):
    run = scan(trained, tmp_path / "log.db", str(photo_tree), "--recursive")
    assert run.returncode == 0, run.stderr
    assert scanned_names(run) == sorted([*FORMATS, "i.png"])


def test_a_linked_folder_is_reported_not_followed(trained: Trained, photo_tree: Path, tmp_path: Path):
    os.symlink(photo_tree, photo_tree / "nested" / "back-to-top")  # a loop, were it followed
    run = scan(trained, tmp_path / "log.db", str(photo_tree), "--recursive")
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


def test_log_shows_filters_and_summarises(trained: Trained, tmp_path: Path):
    db = tmp_path / "log.db"
    assert scan(trained, db, str(trained.folder / "held_out" / "face"), str(trained.folder / "held_out" / "not-face")).returncode == 0
    recent = run_edgeface("log", "--db", str(db), "--limit", "5", "--json")
    assert recent.returncode == 0, recent.stderr
    rows = [json.loads(line) for line in recent.stdout.splitlines()]
    assert len(rows) == 5 and rows[0]["time"] >= rows[-1]["time"]
    faces = run_edgeface("log", "--db", str(db), "--label", "face", "--limit", "1000", "--csv")
    lines = faces.stdout.splitlines()
    assert lines[0].startswith("time,source,path,status,error,label,confidence,unknown")
    with sqlite3.connect(db) as connection:
        expected = connection.execute("SELECT count(*) FROM faces WHERE label = 'face'").fetchone()[0]
    assert len(lines) - 1 == expected
    summary = run_edgeface("log", "--db", str(db), "--summary", "--json")
    counts = [json.loads(line) for line in summary.stdout.splitlines()]
    assert sum(row["faces"] for row in counts) == 40 and {row["label"] for row in counts} <= {"face", "not-face"}
    assert run_edgeface("log", "--db", str(db), "--since", "1h", "--json").stdout.count("\n") == 40
    assert run_edgeface("log", "--db", str(db), "--until", "1h", "--json").stdout == ""
    assert "nothing in the log matches" in run_edgeface("log", "--db", str(db), "--unknown").stdout
    table = run_edgeface("log", "--db", str(db), "--source", "scan", "--limit", "3")
    assert table.stdout.splitlines()[0].split()[:3] == ["time", "source", "path"]


def test_log_refuses_a_bad_time_and_a_missing_file(tmp_path: Path):
    missing = run_edgeface("log", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no log at" in missing.stderr
    sqlite3.connect(tmp_path / "empty.db").close()
    bad = run_edgeface("log", "--db", str(tmp_path / "empty.db"), "--since", "last tuesday")
    assert bad.returncode == 2 and "is not a time" in bad.stderr


def test_two_workers_give_exactly_what_one_gives(trained: Trained, photo_tree: Path, tmp_path: Path):
    def scan_with(workers: str) -> tuple[str, list[tuple]]:
        db = tmp_path / f"log-{workers}.db"
        run = scan(trained, db, str(photo_tree), str(trained.folder / "held_out"), "--recursive", "--workers", workers)
        assert run.returncode == 0, run.stderr
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT i.path, i.sha256, i.status, f.x, f.y, f.w, f.h, f.label, f.confidence, f.unknown "
                "FROM inputs i LEFT JOIN faces f ON f.input_id = i.id ORDER BY i.id, f.id"
            ).fetchall()
        return run.stdout, rows

    serial_output, serial_rows = scan_with("1")
    parallel_output, parallel_rows = scan_with("2")
    assert parallel_output == serial_output
    assert parallel_rows == serial_rows
    assert len(serial_rows) == len(FORMATS) + 1 + 40


def test_min_face_and_max_faces_override_the_model(trained: Trained, tmp_path: Path):
    coins = tmp_path / "coins.png"
    cv2.imwrite(str(coins), skimage_bgr("coins"))  # the cascade takes six coins for faces
    counts = []
    for limits in ((), ("--max-faces", "2"), ("--min-face", "60")):
        run = scan(trained, tmp_path / "l.db", str(coins), "--detector", "haar", "--rescan", *limits)
        assert run.returncode == 0, run.stderr
        counts.append(len(json.loads(run.stdout)["faces"]))
    assert counts[0] == 6 and counts[1] == 2 and 1 <= counts[2] < 6
    refused = scan(trained, tmp_path / "l.db", str(coins), "--min-face", "0")
    assert refused.returncode == 2 and "--min-face" in refused.stderr


def test_forget_a_label_then_a_rescan_does_not_bring_it_back(trained: Trained, tmp_path: Path):
    db = tmp_path / "l.db"
    photos = [str(path) for path, _ in trained.held_out[:4] + trained.held_out[-4:]]  # faces, then not-faces
    assert scan(trained, db, *photos).returncode == 0
    forget = run_edgeface("forget", "--label", "face", "--db", str(db), "--json")
    assert forget.returncode == 0, forget.stderr
    forgotten = json.loads(forget.stdout)["inputs"]
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM faces WHERE label = 'face'").fetchone() == (0,)
        left = connection.execute("SELECT count(*) FROM inputs").fetchone()[0]
    assert forgotten >= 1 and left == 8 - forgotten
    again = run_edgeface("scan", *photos, "--model", str(trained.tflite_file), "--db", str(db))
    assert f"{forgotten + left} already in the log" in again.stderr  # forgotten content is not classified again
    assert run_edgeface("forget", "--db", str(db)).returncode == 2
