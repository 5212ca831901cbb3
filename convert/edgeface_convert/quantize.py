"""Post-training full-integer quantization: a Keras model to an int8 `.tflite` with metadata inside.

Calibration images pass through the runtime's preprocessing, and the int8 model is checked by
running it on LiteRT through the runtime's own classifier, next to the float Keras model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

import edgeface
from edgeface import artefact
from edgeface.artefact import ModelMetadata
from edgeface.model import FaceClassifier, label_probabilities
from edgeface_convert.dataset import FaceSet
from edgeface_convert.quiet import captured_output
from edgeface_convert.training import keras_probabilities


@dataclass(frozen=True)
class ConversionReport:
    """Float vs int8 on the verification faces; sizes in bytes; accuracies None without true labels."""

    output: str
    source_size: int
    float_tflite_size: int
    int8_size: int
    verified_on: str
    samples: int
    agreement: float
    mean_probability_difference: float
    max_probability_difference: float
    float_accuracy: float | None
    int8_accuracy: float | None

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        def percent(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f} %"

        return [
            f"wrote {self.output}",
            f"size: {self.source_size:,} B Keras file, {self.float_tflite_size:,} B float .tflite, "
            f"{self.int8_size:,} B int8 .tflite ({100 * self.int8_size / self.float_tflite_size:.0f} % of float)",
            f"verified on {self.samples} faces ({self.verified_on}): top-1 agreement {percent(self.agreement)}, "
            f"probability difference mean {self.mean_probability_difference:.4f} max {self.max_probability_difference:.4f}",
            f"accuracy: float {percent(self.float_accuracy)}, int8 {percent(self.int8_accuracy)}",
        ]


def _converter(model: tf.keras.Model) -> tf.lite.TFLiteConverter:
    return tf.lite.TFLiteConverter.from_keras_model(model)


def _convert(converter: tf.lite.TFLiteConverter) -> bytes:
    with captured_output():
        return converter.convert()


def to_float_flatbuffer(model: tf.keras.Model) -> bytes:
    """The model as a float32 `.tflite`, for size and speed comparisons."""
    return _convert(_converter(model))


def to_int8_flatbuffer(model: tf.keras.Model, calibration: np.ndarray) -> bytes:
    """Weights, activations, input and output all int8, built-in int8 ops only.

    calibration: float32 (n, height, width, channels) preprocessed faces that set the value ranges.
    """
    if len(calibration) == 0:
        raise ValueError("no calibration faces: pass a folder with face images")

    def representative() -> Iterator[list[np.ndarray]]:
        for crop in calibration:
            yield [crop[np.newaxis]]

    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return _convert(converter)


def write_int8_model(
    model: tf.keras.Model, metadata: ModelMetadata, source: Path, calibration: FaceSet, output: Path
) -> ModelMetadata:
    """Quantizes `model`, embeds `metadata` (with the source's sha256 and tool versions) and writes `output`."""
    stamped = replace(
        metadata,
        source={"file": source.name, "sha256": _file_sha256(source)},
        converter={"edgeface": edgeface.__version__, "tensorflow": tf.__version__},
    )
    output.write_bytes(artefact.embed(to_int8_flatbuffer(model, calibration.crops), stamped))
    return stamped


def verify(model: tf.keras.Model, source: Path, output: Path, faces: FaceSet, verified_on: str) -> ConversionReport:
    """Compares the float Keras model with the int8 file (run on LiteRT) on `faces`."""
    float_probabilities = keras_probabilities(model, faces.crops)
    classifier = FaceClassifier(output)
    int8_probabilities = label_probabilities(classifier.scores(faces.crops), classifier.metadata.output)
    float_top, int8_top = float_probabilities.argmax(axis=1), int8_probabilities.argmax(axis=1)
    difference = np.abs(float_probabilities - int8_probabilities)
    labelled = len(faces.targets) > 0 and bool((faces.targets >= 0).all())
    return ConversionReport(
        output=str(output),
        source_size=source.stat().st_size if source.is_file() else 0,
        float_tflite_size=len(to_float_flatbuffer(model)),
        int8_size=output.stat().st_size,
        verified_on=verified_on,
        samples=len(faces.crops),
        agreement=float((float_top == int8_top).mean()) if len(faces.crops) else 0.0,
        mean_probability_difference=float(difference.mean()) if difference.size else 0.0,
        max_probability_difference=float(difference.max()) if difference.size else 0.0,
        float_accuracy=float((float_top == faces.targets).mean()) if labelled else None,
        int8_accuracy=float((int8_top == faces.targets).mean()) if labelled else None,
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()
