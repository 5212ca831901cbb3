"""Where results go besides the log: sinks, fed after each durable commit.

The log is the source of truth. `Recording` commits a batch of outcomes (images, or a camera's
appearances) to the log, makes sure the commit reached the file that is still the log, and only
then hands the batch, with the rows' ids, to every sink, in commit order. A sink never sees what
the log does not hold, so one that must lose nothing (an MQTT outbox) can catch up from the log.
A sink that fails is said in the journal and does not stop the scan or the daemon. A sink that must lose nothing
(`Outboxed`, the MQTT publisher) gives its events before the commit, and they join the log's outbox in the very
transaction of their rows: an outcome is logged with its event or not at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO, runtime_checkable

from edgeface.clock import Moment, now
from edgeface.results import Appearance, ImageResult
from edgeface.store import LogGone, ResultLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed:
    """One batch the log has just committed: its source ("scan", "folder:…", "camera:…"), the model's sha256,
    the moment of the commit (which also turns an appearance's monotonic times into wall-clock times), and either
    (input id, outcome) pairs or appearances."""

    source: str
    model_sha256: str
    at: Moment
    images: tuple[tuple[int, ImageResult], ...] = ()
    appearances: tuple[Appearance, ...] = ()


class Sink(Protocol):
    """An output fed after the log's commit. `committed` should return quickly (queue slow work)."""

    def committed(self, batch: Committed) -> None: ...


@runtime_checkable
class Outboxed(Sink, Protocol):
    """A sink whose events go into the log's outbox with the outcomes they tell of; `committed` then wakes it."""

    def events(
        self, source: str, model_sha256: str, moment: Moment, images: Sequence[ImageResult],
        appearances: Sequence[Appearance],
    ) -> list[str]: ...  # fmt: skip


@dataclass(frozen=True)
class ModelInLog:
    """The model as the log knows it: its row id and its sha256."""

    id: int
    sha256: str


class Recording:
    """A log and its sinks: `images` and `appearances` commit, then feed every sink."""

    def __init__(self, log: ResultLog, sinks: Sequence[Sink] = ()) -> None:
        self.log = log
        self.sinks = tuple(sinks)

    def use_model(self, sha256: str, path: str, labels: tuple[str, ...]) -> ModelInLog:
        """The model's row in the log (added on first use), for the outcomes it gives."""
        return ModelInLog(self.log.register_model(sha256, path, labels), sha256)

    def images(
        self, results: Sequence[ImageResult], source: str, model: ModelInLog, moment: Moment | None = None
    ) -> list[int]:
        """Commits outcomes (see `ResultLog.record_batch`), then feeds the sinks; returns the inputs' ids."""
        moment = moment or now()
        events = self._events(source, model.sha256, moment, results, ())
        ids = self.log.record_batch(list(results), source, model.id, moment, events)
        self.check()
        self._feed(Committed(source, model.sha256, moment, images=tuple(zip(ids, results))))
        return ids

    def appearances(
        self, appearances: Sequence[Appearance], source: str, model: ModelInLog, moment: Moment | None = None
    ) -> None:
        """Commits a camera's appearances, then feeds the sinks."""
        moment = moment or now()
        events = self._events(source, model.sha256, moment, (), appearances)
        self.log.record_appearances(list(appearances), source, model.id, moment, events)
        self.check()
        self._feed(Committed(source, model.sha256, moment, appearances=tuple(appearances)))

    def check(self) -> None:
        """Raises LogGone when the file at the log's path is no longer the one open: a commit to a log file deleted
        or replaced meanwhile vanishes with it, so it must not be reported (or acted on) as made."""
        if self.log.replaced():
            raise LogGone(self.log.path, "it was deleted or replaced while in use")

    def _events(
        self, source: str, model_sha256: str, moment: Moment, images: Sequence[ImageResult],
        appearances: Sequence[Appearance],
    ) -> list[str]:  # fmt: skip
        """The outbox events of what is about to be committed, from every `Outboxed` sink."""
        outboxed = [sink for sink in self.sinks if isinstance(sink, Outboxed)]
        return [event for sink in outboxed for event in sink.events(source, model_sha256, moment, images, appearances)]

    def _feed(self, batch: Committed) -> None:
        for sink in self.sinks:
            try:
                sink.committed(batch)
            except Exception as error:  # a sink's trouble is its own: the outcome is safe in the log
                logger.error("%s could not take a result: %s", type(sink).__name__, error)


class JsonLinesSink:
    """Writes each committed outcome as one JSON object per line (`watch --json`), for scripts to follow."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def committed(self, batch: Committed) -> None:
        for input_id, result in batch.images:
            self._write({"event": "image", "time": batch.at.wall, "source": batch.source, "input_id": input_id,
                         "model_sha256": batch.model_sha256, "status": str(result.status), **result.to_dict()})  # fmt: skip
        for appearance in batch.appearances:
            self._write({"event": "appearance", "source": batch.source, "model_sha256": batch.model_sha256,
                         **appearance.to_dict(), "first_seen": batch.at.wall_at(appearance.first_seen),
                         "last_seen": batch.at.wall_at(appearance.last_seen)})  # fmt: skip
        self._stream.flush()

    def _write(self, event: dict) -> None:
        self._stream.write(json.dumps(event) + "\n")
