"""Moving a finished file out of the watched folder, once its outcome is committed."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


def move_below(path: str, root: Path, target_folder: str) -> None:
    """Moves `path` (a file below `root`) to the same relative place below `target_folder`. Raises OSError."""
    target = Path(target_folder) / Path(path).relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    _move_out(path, target)


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
