"""What `edgeface scan` prints for people: one table row per face, written as results arrive.

The columns are sized from the model's labels before the first row, so the table lines up
while it streams; the image path comes last because its width cannot be known in advance.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from edgeface.escape import printable
from edgeface.results import ImageResult, rejected_text, shown_label

HEADER = ("LABEL", "CONF", "BOX", "IMAGE")
BOX_WIDTH = len("1000,1000 1000x1000")


def shown_path(path: str) -> str:
    """`path` relative to the working folder when it lies below it, else as it is; printable."""
    relative = os.path.relpath(path)
    return printable(path if relative.startswith("..") else relative)


class ScanTable:
    """Aligned rows for scan results; `row(result)` writes an image's rows (a face each, or one
    row saying "no face" or "error") and flushes, so a slow scan shows its progress line by line.

    gated: the model has a quality gate, so a face may read "rejected (quality 0.031)", without a confidence.
    """

    def __init__(self, labels: Sequence[str], stream: TextIO | None = None, gated: bool = False) -> None:
        self._stream = stream or sys.stdout
        shown = [shown_label(label, unknown=True) for label in labels] + ([rejected_text(0.0)] if gated else [])
        longest = max(map(len, shown), default=0)
        self._widths = (max(longest, len("(no face)"), len(HEADER[0])), len("0.000"), BOX_WIDTH)
        self._header_written = False

    def _line(self, label: str, confidence: str, box: str, image: str) -> None:
        cells = (label, confidence, box)
        padded = "  ".join(cell.ljust(width) for cell, width in zip(cells, self._widths))
        self._stream.write(f"{padded}  {image}".rstrip() + "\n")

    def row(self, result: ImageResult) -> None:
        if not self._header_written:
            self._line(*HEADER)
            self._header_written = True
        image = shown_path(result.path)
        if result.error:
            self._line("(error)", "", "", f"{image}: {result.error}")
        elif not result.faces:
            self._line("(no face)", "", "", image)
        for face in result.faces:
            box = face.box
            confidence = "" if face.rejected else f"{face.confidence:.3f}"
            self._line(printable(face.shown), confidence, f"{box.x},{box.y} {box.w}x{box.h}", image)
        self._stream.flush()
