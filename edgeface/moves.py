"""Moving a finished file out of the watched folder, once its outcome is committed."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


def move_below(path: str, root: Path, target_folder: str) -> Path:
    """Moves `path` (a file below `root`) to the same relative place below `target_folder`; returns where it went.
    Raises OSError, or ValueError for a path that is not below `root`.

    Never through a link: a sub-folder of `target_folder` that is a link (one named like a sub-folder of the
    watched folder, say) could lead the file, and the folders made for it, anywhere."""
    relative = Path(path).relative_to(root)
    folder = Path(target_folder)
    folder.mkdir(parents=True, exist_ok=True)  # the folder given is followed wherever it is; what is below it is not
    for part in relative.parent.parts:
        folder = folder / part
        if folder.is_symlink():
            raise OSError(errno.ELOOP, f"{folder} is a link; a move does not follow links")
        folder.mkdir(exist_ok=True)
    return _move_out(path, folder / relative.name)


def put_back(moved: Path, path: str) -> str:
    """Moves a file that was just moved out back into the watched folder (it changed while it was moved, so its
    content is not the one logged): to `path`, or to a free name beside it when a new file took that name
    meanwhile. Returns the name it is back under."""
    back = _free_name(Path(path))
    _move_out(str(moved), back)
    return str(back)


def _move_out(path: str, target: Path) -> Path:
    """Moves `path` to `target` by a hard link and an unlink, or by copying across file systems.

    Not by rename: the watched folder would see IN_MOVED_FROM, which watchdog holds for half a
    second to pair with a move in, and every event queued behind it waits too. A target that
    already is this file (a move cut short by a crash) is kept, and only the source removed. Returns
    where the file is now.
    """
    if target.exists() and os.path.samefile(path, target):
        os.unlink(path)
        return target
    free = _free_name(target)
    try:
        os.link(path, free)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):  # other file system, no hard links
            raise
        shutil.move(path, free)
        return free
    os.unlink(path)
    return free


def _free_name(target: Path) -> Path:
    """`target`, or `name.1.jpg`, `name.2.jpg`… when a file of that name (or a link, even a dangling one, which a
    copy would write through) is already there."""
    candidate, number = target, 0
    while os.path.lexists(candidate):
        number += 1
        candidate = target.with_name(f"{target.stem}.{number}{target.suffix}")
    return candidate
