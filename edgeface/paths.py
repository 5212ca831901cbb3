"""Where inputs are and what they are called: absolute names, file identity and image suffixes.

Standard library only, so the log and the folder intake can name files without loading OpenCV.
"""

from __future__ import annotations

import os
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
