"""`edgeface scan`: classify the faces in image files and folders once, into the log (and, with `--publish`, its
outbox for the broker)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeface.broker import topics_of
from edgeface.images import ImageError, InputFile, read_input
from edgeface.paths import folder_files, is_image_name
from edgeface.pipeline import Pipeline
from edgeface.results import ImageResult
from edgeface.progress import Progress
from edgeface.publisher import Publisher
from edgeface.settings import MqttSettings
from edgeface.sinks import Recording
from edgeface.workers import PipelineRecipe, process_all

SOURCE = "scan"
BATCH_SIZE = 32  # outcomes per transaction: fewer fsyncs, and little to redo after a crash
BATCH_SECONDS = 1.0  # ...but never hold an outcome back longer than this
PUBLISH_WAIT_SECONDS = 10.0  # how long `scan --publish` waits at the end for the broker to take its events


@dataclass
class ScanSummary:
    """Counts for one scan. `already` inputs were in the log with the same content and not redone;
    `problems` are paths that do not exist, folders that could not be read and links not followed, none of
    which is an input (so none is logged)."""

    images: int = 0
    faces: int = 0
    already: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[ImageResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth a word, not a failure: a folder with no images


def image_paths(paths: Iterable[str], recursive: bool, summary: ScanSummary) -> Iterator[str]:
    """Image files named by `paths`, in order; a folder gives its image files as `folder_files` walks it.

    Other files go to `summary.skipped`; what the walk leaves out (links, unreadable folders) and paths that do
    not exist (a typo is no input: it is not logged) to `summary.problems`; a folder without images to `notes`.
    """
    for path in paths:
        if os.path.isdir(path):
            before = len(summary.skipped)
            images = 0
            for found in folder_files(path, recursive, summary.problems.append):
                if is_image_name(found) and os.path.isfile(found):
                    images += 1
                    yield found
                else:
                    summary.skipped.append(found)
            if not images:
                others = len(summary.skipped) - before
                summary.notes.append(f"no image files in {path}" + (f" ({others} other file{'s' if others > 1 else ''})" if others else "")
                                     + ("" if recursive else "; --recursive also looks in its sub-folders"))  # fmt: skip
        elif not os.path.lexists(path):
            summary.problems.append(f"no such file or folder: {path}")
        elif not is_image_name(path):
            summary.skipped.append(path)
        else:
            yield path


def scan(
    paths: Iterable[str],
    pipeline: Pipeline,
    recipe: PipelineRecipe,
    recording: Recording,
    on_result: Callable[[ImageResult], None] = lambda result: None,
    rescan: bool = False,
    recursive: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
) -> ScanSummary:
    """Processes every image under `paths` into the log (and its sinks), calling `on_result` after each is processed.

    `pipeline` runs here (it is `recipe.build()`, made by the caller so that a bad model fails
    before anything is opened); `recipe` builds the workers' copies. With several `workers` the
    results, their order and the log are the same as with one.
    Outcomes are committed in small batches; an interrupted scan keeps what it committed, and the
    next run skips those inputs. The files are listed first so that `progress` knows the total.
    """
    summary = ScanSummary()
    progress = progress or Progress(SOURCE)
    found = list(image_paths(paths, recursive, summary))
    progress.start(len(found))
    recognizer = pipeline.recognizer
    log = recording.log
    model = recording.use_model(recognizer.sha256, str(recognizer.path), recognizer.labels)
    # People enrolled in this log join an embedder's gallery, here and in every worker.
    enrolments = log.enrolments(recognizer.network_sha256)
    recognizer.use_enrolments(enrolments)
    recipe = replace(recipe, enrolments=enrolments)

    def inputs() -> Iterator[InputFile | ImageResult]:
        for path in found:
            try:
                input_file = read_input(path)
            except ImageError as error:
                yield ImageResult.unreadable(path, str(error))
                continue
            if not rescan and log.outcome_of(input_file.path, input_file.sha256):
                summary.already += 1
                progress.step()
                continue
            yield input_file

    pending: list[ImageResult] = []
    flushed = time.monotonic()
    try:
        # No more workers than files: a worker costs a process start and a model load (about a second on a Pi).
        for result in process_all(inputs(), pipeline, recipe, min(workers, len(found))):
            pending.append(result)
            summary.images += 1
            summary.faces += len(result.faces)
            if result.error:
                summary.failed.append(result)
            on_result(result)
            progress.step()
            if len(pending) >= BATCH_SIZE or time.monotonic() - flushed >= BATCH_SECONDS:
                recording.images(pending, SOURCE, model)
                pending, flushed = [], time.monotonic()
    finally:
        if pending:
            recording.images(pending, SOURCE, model)
        progress.done()
    return summary


def publisher(settings: MqttSettings, db: Path) -> Publisher:
    """`scan --publish`'s sink: the outbox of the log at `db` published as `watch` publishes it, but with a client id
    of its own (the daemon's with `-scan`: one id would throw the other off the broker), and leaving the box's
    availability topic to the daemon, so a scan that ends does not mark the box offline."""
    own = replace(settings, client_id=f"{topics_of(settings).client_id}-scan")
    return Publisher(own, db, availability=False)

