"""`edgeface scan`: classify the faces in image files and folders once, into the log."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgeface.images import ImageError, is_image_name, read_input
from edgeface.pipeline import ImageResult, Pipeline
from edgeface.store import ResultLog

SOURCE = "scan"


@dataclass
class ScanSummary:
    """Counts for one scan. `already` inputs were in the log with the same content and not redone."""

    images: int = 0
    faces: int = 0
    already: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[ImageResult] = field(default_factory=list)


def image_paths(paths: Iterable[str], skipped: list[str]) -> Iterator[str]:
    """Image files named by `paths`, in order; a folder gives its image files, sorted.

    Files that are not images are appended to `skipped`. Paths that do not exist are yielded, so
    they end as a recorded error rather than vanishing.
    """
    for path in paths:
        if os.path.isdir(path):
            for entry in sorted(Path(path).iterdir()):
                if entry.is_file() and is_image_name(entry):
                    yield str(entry)
                elif not entry.is_dir():
                    skipped.append(str(entry))
        elif os.path.exists(path) and not is_image_name(path):
            skipped.append(path)
        else:
            yield path


def scan(
    paths: Iterable[str],
    pipeline: Pipeline,
    log: ResultLog,
    on_result: Callable[[ImageResult], None] = lambda result: None,
    rescan: bool = False,
) -> ScanSummary:
    """Processes every image under `paths` into `log`, calling `on_result` after each is recorded."""
    summary = ScanSummary()
    classifier = pipeline.classifier
    model_id = log.register_model(classifier.sha256, str(classifier.path), classifier.labels)
    for path in image_paths(paths, summary.skipped):
        try:
            source = read_input(path)
        except ImageError as error:
            result = ImageResult.unreadable(path, str(error))
        else:
            if not rescan and log.is_recorded(source.path, source.sha256):
                summary.already += 1
                continue
            result = pipeline.process(source)
        log.record(result, SOURCE, model_id)
        summary.images += 1
        summary.faces += len(result.faces)
        if result.error:
            summary.failed.append(result)
        on_result(result)
    return summary


def describe(result: ImageResult) -> str:
    """One readable line for an image's outcome."""
    if result.error:
        return f"{result.path}: error: {result.error}"
    if not result.faces:
        return f"{result.path}: no face"
    faces = ", ".join(
        f"{'unknown (nearest ' + face.label + ')' if face.unknown else face.label} {face.confidence:.2f} "
        f"at {face.box.x},{face.box.y} {face.box.w}x{face.box.h}"
        for face in result.faces
    )
    count = "1 face" if len(result.faces) == 1 else f"{len(result.faces)} faces"
    return f"{result.path}: {count}: {faces}"
