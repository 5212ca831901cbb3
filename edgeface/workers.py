"""Running the pipeline on every core: N workers are this process and N - 1 others, each with its own model.

This process takes an input itself whenever the others have their fill, so it works while they start (a process
start and a model load) and no core waits on a process that only hands inputs out. The others are forked when
that is safe (see `start_method`): a forked worker starts in milliseconds, a spawned one imports everything again.
Results come back in input order, so a scan with N workers prints and logs exactly what a scan with one worker does. Only a few inputs wait
for the pool (four per worker) and a few results wait for an older one (sixteen per worker), so memory stays flat
however many files there are.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import cv2

from edgeface.gallery import Enrolments
from edgeface.images import InputFile
from edgeface.pipeline import Pipeline
from edgeface.results import ImageResult
from edgeface.recognizer import load_recognizer
from edgeface.settings import DetectorOverrides

IN_FLIGHT_PER_WORKER = 4  # enough that one slow photo does not leave the other workers idle
# Results this process may hold ahead of the oldest one still in the pool: it goes on taking inputs meanwhile.
AHEAD_PER_WORKER = 16

Item = InputFile | ImageResult  # an ImageResult here is an input that failed before processing


@dataclass(frozen=True, kw_only=True)
class PipelineRecipe:
    """How to build a Pipeline, here or in another process (paths travel; an interpreter does not).

    threads: LiteRT threads (None: LiteRT's choice). detector: overrides of the model's detector and
    crop, and YuNet's file on this machine. enrolments: the people the log adds to an embedder's
    gallery (read once by the parent, so every worker names faces alike).
    """

    model: str
    threads: int | None = None
    detector: DetectorOverrides = field(default_factory=DetectorOverrides)
    enrolments: Enrolments | None = None

    def build(self, report_differences: bool = True) -> Pipeline:
        recognizer = load_recognizer(self.model, self.threads)
        if self.enrolments is not None:
            recognizer.use_enrolments(self.enrolments)
        spec = self.detector.applied_to(recognizer.metadata.preprocessing)
        return Pipeline(recognizer, spec, report_differences)


_worker_pipeline: Pipeline | None = None


def _start_worker(recipe: PipelineRecipe) -> None:
    global _worker_pipeline
    cv2.setNumThreads(1)  # the workers share the cores; OpenCV's own threads would oversubscribe them
    _worker_pipeline = recipe.build(report_differences=False)  # the parent already warned once


def _process(input_file: InputFile) -> ImageResult:
    return _worker_pipeline.process(input_file)


def process_all(items: Iterable[Item], pipeline: Pipeline, recipe: PipelineRecipe, workers: int) -> Iterator[ImageResult]:
    """The result of each item, in order: `pipeline` in this process, and with several `workers` a pool of
    workers - 1 processes built from `recipe` beside it. Items that already are results pass through."""
    if workers <= 1:
        for item in items:
            yield item if isinstance(item, ImageResult) else pipeline.process(item)
        return
    context = multiprocessing.get_context(start_method(recipe))
    others = workers - 1
    with ProcessPoolExecutor(others, mp_context=context, initializer=_start_worker, initargs=(recipe,)) as pool:
        in_flight: deque[Future] = deque()
        for item in items:
            if isinstance(item, ImageResult):
                in_flight.append(_done(item))
            elif sum(not future.done() for future in in_flight) < IN_FLIGHT_PER_WORKER * others:
                in_flight.append(pool.submit(_process, item))
            else:  # the pool has its fill: this process takes the item
                in_flight.append(_done(pipeline.process(item)))
            while in_flight and (in_flight[0].done() or len(in_flight) >= AHEAD_PER_WORKER * workers):
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


def start_method(recipe: PipelineRecipe) -> str:
    """"fork" when this process runs no thread a copy could inherit mid-work, else "spawn".

    A forked copy of a process whose LiteRT or OpenCV thread pools are running, or that has another Python thread
    (an MQTT client's, say), may inherit a lock some thread held and hang. With one LiteRT thread and one OpenCV
    thread neither keeps a pool, and the only other threads are numpy's and OpenCV's OpenBLAS pools, which OpenBLAS
    stops and restarts around a fork itself. A spawned worker costs a new interpreter and every import instead,
    which in a job of a second or two is much of the head start a second worker should bring.
    """
    single_threaded = recipe.threads == 1 and cv2.getNumThreads() == 1 and threading.active_count() == 1
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    return "fork" if single_threaded and can_fork else "spawn"


def _done(result: ImageResult) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future
