"""The model's self-test: stored sample crops must still give their stored probabilities.

`convert` stores a few calibration crops and the int8 model's answers in the model file; the
daemon runs them before it tells systemd it is ready. The crops are kept as uint8 pixels (exact
for crops made from 8-bit images) and turned into model inputs by the same function as every
other crop.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import numpy as np

from edgeface.artefact import SelfTest
from edgeface.model import ModelError, TFLiteModel
from edgeface.preprocess import Preprocessing, pixels_to_values, values_to_pixels

logger = logging.getLogger(__name__)

SAMPLES = 3
# Two int8 steps of a softmax output (scale 1/256) plus room for a runtime on another CPU.
TOLERANCE = 0.02


class SelfTestFailed(ModelError):
    """The model did not reproduce its stored answers."""


def make_self_test(outputs: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, spec: Preprocessing) -> SelfTest:
    """A self-test from `SAMPLES` evenly spaced `crops`, answered by `outputs` (the int8 model's
    probabilities or embeddings)."""
    picked = crops[np.linspace(0, len(crops) - 1, min(SAMPLES, len(crops))).round().astype(int)]
    pixels = values_to_pixels(picked, spec)
    answers = outputs(pixels_to_values(pixels, spec))
    return SelfTest(
        tuple(base64.b64encode(crop.tobytes()).decode("ascii") for crop in pixels),
        tuple(tuple(round(float(value), 6) for value in row) for row in answers),
        TOLERANCE,
    )


def run_self_test(classifier: TFLiteModel) -> None:
    """Raises SelfTestFailed when the model's answers differ from those stored in it."""
    test = classifier.metadata.self_test
    if test is None:
        logger.warning("%s carries no self-test (made before edgeface stored one); not checked", classifier.path)
        return
    spec = classifier.metadata.preprocessing
    try:
        pixels = np.stack([np.frombuffer(base64.b64decode(item), np.uint8).reshape(spec.input_shape)
                           for item in test.inputs])  # fmt: skip
    except ValueError as error:
        raise SelfTestFailed(f"{classifier.path}: its self-test samples are damaged: {error}") from None
    answers = classifier.outputs(pixels_to_values(pixels, spec))
    expected = np.array(test.probabilities, dtype=np.float32)
    difference = float(np.abs(answers - expected).max()) if answers.shape == expected.shape else float("inf")
    # A classifier must also keep its top label; an embedding has no top to keep.
    same_top = classifier.metadata.kind != "classifier" or np.array_equal(answers.argmax(axis=1), expected.argmax(axis=1))
    if difference > test.tolerance or not same_top:
        raise SelfTestFailed(
            f"{classifier.path} failed its self-test: its answers to {len(pixels)} stored samples differ from "
            f"those recorded when it was made (largest difference {difference:.4f}, allowed {test.tolerance})"
        )
    logger.info("self-test passed: %d samples, largest difference %.4f", len(pixels), difference)
