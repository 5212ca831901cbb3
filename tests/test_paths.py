"""The one folder walk: order, recursion, exclusions, and links that never lead out of the folder given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeface.paths import FileRefused, folder_files, read_regular_file


def walk(top: Path, recursive: bool = True, excluded: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    found = [os.path.relpath(path, top) for path in folder_files(top, recursive, problems.append, excluded)]
    return found, problems


def test_files_by_name_a_folders_files_before_its_subfolders_and_recursion_only_when_asked(tmp_path: Path):
    for name in ("b.jpg", "a.png", "sub/z.jpg", "sub/deeper/c.jpg", "aaa/x.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert walk(tmp_path) == (["a.png", "b.jpg", "aaa/x.jpg", "sub/z.jpg", "sub/deeper/c.jpg"], [])
    assert walk(tmp_path, recursive=False) == (["a.png", "b.jpg"], [])
    assert walk(tmp_path, excluded=(str(tmp_path / "sub"),)) == (["a.png", "b.jpg", "aaa/x.jpg"], [])


def test_links_never_lead_out_and_linked_folders_are_not_entered(tmp_path: Path):
    top, outside = tmp_path / "top", tmp_path / "outside"
    (top / "real").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    (top / "real" / "inside.jpg").write_bytes(b"x")
    os.symlink(outside / "secret.jpg", top / "out.jpg")
    os.symlink(top / "real" / "inside.jpg", top / "in.jpg")
    os.symlink(outside, top / "linked-out")
    os.symlink(top, top / "real" / "loop")
    found, problems = walk(top)
    assert found == ["in.jpg", "real/inside.jpg"]
    assert sorted(problems) == sorted([
        f"link out of the folder, not followed: {top / 'out.jpg'}",
        f"linked folder, not followed: {top / 'linked-out'}",
        f"linked folder, not followed: {top / 'real' / 'loop'}",
    ])  # fmt: skip


def test_only_regular_files_are_opened_and_only_up_to_the_limit(tmp_path: Path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x" * 100)
    os.symlink("/dev/zero", tmp_path / "zero.jpg")  # opening a device can act on it: it must never be opened
    os.mkfifo(tmp_path / "pipe.jpg")
    assert read_regular_file(photo, 100) == b"x" * 100
    for path, says in ((tmp_path / "zero.jpg", "not a regular file"), (tmp_path / "pipe.jpg", "not a regular file"),
                       (tmp_path, "not a regular file"), (photo, "larger than the limit")):  # fmt: skip
        with pytest.raises(FileRefused, match=says):
            read_regular_file(path, 99 if path == photo else 100)
