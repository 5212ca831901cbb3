"""Where inputs are and what they are called: absolute names, file identity, image suffixes, the folder walk.

Standard library only, so the log and the folder intake can name files without loading OpenCV.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm"}
)


def is_image_name(path: str | Path) -> bool:
    """Whether the file name has an image suffix (any letter case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def absolute(path: str | Path) -> str:
    """The normalised absolute form of `path`, as the log stores it."""
    return os.path.abspath(path)


def file_identity(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of the file or folder at `path`, None when nothing is there: what stays the
    same while it is the same file, and changes when it is deleted and made anew."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino)


Stamp = tuple[int, int, int, int]


def file_stamp(path: str | Path) -> Stamp | None:
    """(device, inode, size, modification time in ns) of the file at `path` itself (a link is not followed), None
    when nothing is there: a write, a truncation or a replacement changes it."""
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def folder_files(
    top: str | Path, recursive: bool, on_problem: Callable[[str], None], excluded: tuple[str, ...] = ()
) -> Iterator[str]:
    """Every file in the folder `top` (with `recursive`, in its sub-folders too): by name within each folder, a
    folder's files before its sub-folders. The one walk of edgeface: scan, the daemon's listing and training
    folders all use it, so they agree on what a folder holds.

    Links never lead out of the folders a user gave: a linked sub-folder is not entered (which also rules out
    loops; its target, when inside `top`, is walked by its own name), and a linked file is given only when it
    resolves inside `top`. What is left out is said to `on_problem`, as are folders that cannot be read.
    `excluded` folders (absolute paths) are skipped silently, with everything below them.
    """
    inside = os.path.realpath(top) + os.sep
    skipped = tuple(path.rstrip(os.sep) + os.sep for path in excluded)

    def unreadable(error: OSError) -> None:
        on_problem(f"cannot read folder {error.filename}: {error.strerror}")

    for folder, subfolders, files in os.walk(top, onerror=unreadable):
        for name in [name for name in subfolders if recursive and os.path.islink(os.path.join(folder, name))]:
            on_problem(f"linked folder, not followed: {os.path.join(folder, name)}")
        subfolders[:] = sorted(
            name for name in subfolders
            if recursive and not os.path.islink(os.path.join(folder, name))
            and not (absolute(os.path.join(folder, name)) + os.sep).startswith(skipped)
        )  # fmt: skip
        for name in sorted(files):
            path = os.path.join(folder, name)
            if os.path.islink(path) and not os.path.realpath(path).startswith(inside):
                on_problem(f"link out of the folder, not followed: {path}")
                continue
            yield path


class FileRefused(OSError):
    """A path that is not a regular file, or a file larger than the caller's limit: refused before reading."""


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at `path`, of at most `limit` bytes. The one way edgeface reads what a user,
    a folder or a config names (photos, configs, models), so that none of it is opened before it is known to be
    a regular file: a device or a pipe (or a link to one) is never opened, since opening can act on it.

    The open itself does not block or follow a swap: the file opened must be the one looked at, and its size
    is checked before reading and again after (it may grow meanwhile). Raises FileRefused, or the OSError met.
    """
    seen = os.stat(path)
    if not stat.S_ISREG(seen.st_mode):
        raise FileRefused(errno.EINVAL, "not a regular file")
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        opened = os.fstat(descriptor)
        if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino) or not stat.S_ISREG(opened.st_mode):
            raise FileRefused(errno.EAGAIN, "replaced while it was being opened")
        if opened.st_size <= limit:
            with open(descriptor, "rb", closefd=False) as file:
                content = file.read(limit + 1)
            if len(content) <= limit:
                return content
        raise FileRefused(errno.EFBIG, f"larger than the limit of {_size(limit)}")
    finally:
        os.close(descriptor)


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 else f"{count >> 10} KiB"
