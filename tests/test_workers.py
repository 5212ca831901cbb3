"""The pipeline on several cores: this process works beside the pool, and the order and results are one worker's."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import cv2

from edgeface.images import InputFile, read_input
from edgeface.pipeline import Pipeline
from edgeface.results import ImageResult
from edgeface.workers import IN_FLIGHT_PER_WORKER, PipelineRecipe, process_all, start_method
from helpers import Classifier


class CountingPipeline:
    """The real pipeline, counting the inputs it takes in this process."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline, self.taken = pipeline, 0

    def process(self, input_file: InputFile) -> ImageResult:
        self.taken += 1
        return self.pipeline.process(input_file)


def test_this_process_takes_inputs_beside_the_pool_and_the_order_is_kept(classifier: Classifier, tmp_path: Path):
    faces = [path for path, _ in classifier.held_out][:24]
    inputs = [read_input(str(path)) for path in faces]
    broken = ImageResult.unreadable(str(tmp_path / "gone.png"), "cannot read")  # passes through in its place
    recipe = PipelineRecipe(model=str(classifier.tflite_file), threads=1)
    here = CountingPipeline(recipe.build())
    alone = [recipe.build().process(item) for item in inputs]
    together = list(process_all([*inputs[:12], broken, *inputs[12:]], here, recipe, workers=2))
    assert [result.path for result in together] == [*map(str, faces[:12]), broken.path, *map(str, faces[12:])]
    assert [result.faces for result in together if result is not broken] == [result.faces for result in alone]
    # The pool holds IN_FLIGHT_PER_WORKER at most; this process took the rest of what came while it was full.
    assert 0 < here.taken <= len(inputs) - IN_FLIGHT_PER_WORKER


def test_workers_are_forked_only_from_a_process_without_running_thread_pools():
    """One LiteRT and one OpenCV thread in a fresh interpreter: fork. Any pool or other thread: spawn."""
    program = ("import cv2; from edgeface.workers import PipelineRecipe, start_method; cv2.setNumThreads(1); "
               "print(*(start_method(PipelineRecipe(model='m', threads=n)) for n in (1, 2)))")
    fresh = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert fresh.stdout.split() == ["fork", "spawn"]
    threads_before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        assert start_method(PipelineRecipe(model="m", threads=1)) == "spawn"
        cv2.setNumThreads(1)
        waiting = threading.Event()
        other = threading.Thread(target=waiting.wait)
        other.start()
        try:
            assert start_method(PipelineRecipe(model="m", threads=1)) == "spawn"
        finally:
            waiting.set()
            other.join()
    finally:
        cv2.setNumThreads(threads_before)
