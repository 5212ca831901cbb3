"""Reading input files: their identity (absolute path + content hash) and their pixels.

The identity decides what the log treats as "the same input": the same bytes at the same path.
A file edited in place is a new input; the same photo copied elsewhere is another input too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm"}
)


class ImageError(Exception):
    """An input that cannot be read or decoded; the message is recorded in the log."""


@dataclass(frozen=True)
class InputFile:
    """One input's identity and bytes.

    path: absolute, normalised, symlinks not resolved (the name the user or the folder gave).
    sha256: hex digest of the content.
    """

    path: str
    content: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.content)


def is_image_name(path: str | Path) -> bool:
    """Whether the file name has an image suffix (any letter case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def absolute(path: str | Path) -> str:
    """The normalised absolute form of `path`, as the log stores it."""
    return os.path.abspath(path)


def read_input(path: str | Path) -> InputFile:
    """The file's bytes and identity; ImageError when it cannot be read."""
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise ImageError(f"cannot read: {error.strerror or error}") from None
    return InputFile(absolute(path), content, hashlib.sha256(content).hexdigest())


def decode(content: bytes) -> np.ndarray:
    """Pixels of an encoded image as H×W×3 uint8 BGR, EXIF rotation applied; ImageError if not an image."""
    if not content:
        raise ImageError("empty file")
    pixels = cv2.imdecode(np.frombuffer(content, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise ImageError("not a decodable image")
    return pixels
