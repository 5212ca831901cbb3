"""`save_crops`: face crops kept on disk, only when the config asks, and only for `crops_days`.

Crops are faces, so by default none is written. With `save_crops = true` each face of a photo
is written as a JPEG in a folder per UTC day, `crops/YYYY-MM-DD/`, in the log's folder (the
state directory under systemd). The log names each face's crop, so `edgeface forget` deletes
the crops with their rows; whole day folders older than `crops_days` are deleted by retention.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edgeface.geometry import Box

JPEG_QUALITY = 90


class CropStore:
    """The crop folders under `folder`, kept `days` days."""

    def __init__(self, folder: Path, days: float) -> None:
        self.folder, self.days = folder, days

    def save(self, pixels: np.ndarray, boxes: list[Box], wall: str, name: str) -> list[str]:
        """Writes the crop of each box as `DAY/NAME-I.jpg` and returns their paths; `wall` is the UTC
        ISO time the photo was logged at, `name` something unique to it (its input id)."""
        day = self.folder / wall[:10]
        day.mkdir(parents=True, exist_ok=True)
        height, width = pixels.shape[:2]
        paths = []
        for number, box in enumerate(boxes):
            face = pixels[max(0, box.y) : min(height, box.y + box.h), max(0, box.x) : min(width, box.x + box.w)]
            path = day / f"{name}-{number}.jpg"
            if face.size and cv2.imwrite(str(path), face, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                paths.append(str(path))
        return paths

    def first_kept(self, wall: str) -> str:
        """The path below which crops are older than `days` at the UTC ISO time `wall`."""
        return str(self.folder / (datetime.fromisoformat(wall) - timedelta(days=self.days)).date().isoformat())

    def expire(self, first_kept: str) -> int:
        """Deletes the day folders that sort before `first_kept`; returns how many."""
        old = [day for day in self.folder.glob("????-??-??") if str(day) < first_kept] if self.folder.is_dir() else []
        for day in old:
            shutil.rmtree(day, ignore_errors=True)
        return len(old)
