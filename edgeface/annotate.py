"""`scan --annotate DIR`: copies of the scanned photos with each face's box and label drawn on.

The copies mirror the inputs' paths under DIR (relative to the working folder when the input is
below it), so photos with the same name in different folders do not overwrite each other.
The photo is read again from disk rather than shipped back from a worker; a file that changed
since it was classified is not annotated, since its boxes would no longer fit.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgeface.images import ImageError, decode, read_input
from edgeface.results import ImageResult

KNOWN_COLOUR = (80, 200, 60)  # BGR green
UNKNOWN_COLOUR = (0, 140, 255)  # BGR orange
WRITABLE_INSTEAD = {".pgm": ".png", ".pbm": ".png"}  # OpenCV writes these only in grey


class AnnotationError(Exception):
    """An annotated copy could not be made; the scan result itself stands."""


def overwrites_inputs(folder: Path) -> bool:
    """Whether copies under `folder` would land on the inputs themselves: the copies mirror the inputs' paths
    from the working folder (or from / for inputs elsewhere), so `folder` must be neither."""
    return folder.resolve() in (Path.cwd().resolve(), Path("/").resolve())


def annotation_path(folder: Path, image_path: str) -> Path:
    """Where the annotated copy of `image_path` goes under `folder`."""
    relative = os.path.relpath(image_path)
    if relative.startswith(".."):
        relative = os.path.splitdrive(os.path.abspath(image_path))[1].lstrip(os.sep)
    target = folder / relative
    return target.with_suffix(WRITABLE_INSTEAD.get(target.suffix.lower(), target.suffix))


def draw_faces(pixels: np.ndarray, result: ImageResult) -> np.ndarray:
    """A copy of `pixels` with a box and "label confidence" for each face in `result`."""
    canvas = pixels.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 300))
    font_scale = max(0.4, max(canvas.shape[:2]) / 1000)
    for face in result.faces:
        box, colour = face.box, UNKNOWN_COLOUR if face.unknown or face.rejected else KNOWN_COLOUR
        cv2.rectangle(canvas, (box.x, box.y), (box.x + box.w, box.y + box.h), colour, thickness)
        text = face.said
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(0, box.y - height - baseline)  # above the box, or inside it at the top edge
        cv2.rectangle(canvas, (box.x, top), (box.x + width, top + height + baseline), colour, cv2.FILLED)
        cv2.putText(
            canvas, text, (box.x, top + height), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness,
            cv2.LINE_AA,
        )  # fmt: skip
    return canvas


def write_annotated(folder: Path, result: ImageResult) -> Path | None:
    """Writes the annotated copy for a decoded image and returns its path; None for inputs that
    failed (there is nothing to draw on). AnnotationError says why a copy could not be made."""
    if result.error:
        return None
    try:
        input_file = read_input(result.path)
        if input_file.sha256 != result.sha256:
            raise AnnotationError(f"{result.path} changed since it was scanned; not annotated")
        pixels = decode(input_file.content)
    except ImageError as error:
        raise AnnotationError(f"{result.path}: {error}") from None
    target = annotation_path(folder, result.path)
    if target.exists() and os.path.samefile(target, result.path):
        raise AnnotationError(f"the copy of {result.path} would overwrite the photo itself; not annotated")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(str(target), draw_faces(pixels, result))
    except (OSError, cv2.error) as error:
        raise AnnotationError(f"cannot write {target}: {error}") from None
    if not written:
        raise AnnotationError(f"cannot write {target}")
    return target
