"""Post-training full-integer quantization: a float model to an int8 `.tflite` with metadata inside.

Calibration images pass through the runtime's preprocessing, and the int8 model is checked by
running it on LiteRT through the runtime's own classifier, next to the float model.
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
from edgeface.dataset import FaceSet
from edgeface.model import FaceClassifier
from edgeface.recognizer import load_recognizer
from edgeface.selftest import make_self_test
from edgeface_convert.keras_io import SourceModel
from edgeface_convert.quiet import captured_output


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
            f"size: {self.source_size:,} B source model, {self.float_tflite_size:,} B float .tflite, "
            f"{self.int8_size:,} B int8 .tflite ({100 * self.int8_size / self.float_tflite_size:.0f} % of float)",
            f"verified on {self.samples} faces ({self.verified_on}): top-1 agreement {percent(self.agreement)}, "
            f"probability difference mean {self.mean_probability_difference:.4f} max {self.max_probability_difference:.4f}",
            f"accuracy: float {percent(self.float_accuracy)}, int8 {percent(self.int8_accuracy)}",
        ]


def _convert(converter: tf.lite.TFLiteConverter) -> bytes:
    with captured_output():
        return converter.convert()


def to_float_flatbuffer(source: SourceModel) -> bytes:
    """The model as a float32 `.tflite`, for size and speed comparisons."""
    return _convert(source.converter())


def to_int8_flatbuffer(source: SourceModel, calibration: np.ndarray) -> bytes:
    """Weights, activations, input and output all int8, built-in int8 ops only (no Flex ops).

    calibration: float32 (n, height, width, channels) preprocessed faces that set the value ranges.
    """
    if len(calibration) == 0:
        raise ValueError("no calibration faces: pass a folder with face images")

    def representative() -> Iterator[list[np.ndarray]]:
        for crop in calibration:
            yield [crop[np.newaxis]]

    converter = source.converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return _convert(converter)


def stamp(metadata: ModelMetadata, source: SourceModel) -> ModelMetadata:
    """`metadata` with the source model's name and sha256 and the versions of the tools used."""
    return replace(
        metadata,
        source={"file": source.path.name, "sha256": file_sha256(source.path)},
        converter={"edgeface": edgeface.__version__, "tensorflow": tf.__version__},
    )


def verify(source: SourceModel, output: Path, faces: FaceSet, verified_on: str) -> ConversionReport:
    """Compares the float model with the int8 file (run on LiteRT) on `faces`."""
    float_top = source.probabilities(faces.crops)
    int8_top = FaceClassifier(output).probabilities(faces.crops)
    difference = np.abs(float_top - int8_top)
    float_label, int8_label = float_top.argmax(axis=1), int8_top.argmax(axis=1)
    labelled = len(faces.targets) > 0 and bool((faces.targets >= 0).all())
    return ConversionReport(
        output=str(output),
        source_size=tree_size(source.path),
        float_tflite_size=len(to_float_flatbuffer(source)),
        int8_size=output.stat().st_size,
        verified_on=verified_on,
        samples=len(faces.crops),
        agreement=float((float_label == int8_label).mean()) if len(faces.crops) else 0.0,
        mean_probability_difference=float(difference.mean()) if difference.size else 0.0,
        max_probability_difference=float(difference.max()) if difference.size else 0.0,
        float_accuracy=float((float_label == faces.targets).mean()) if labelled else None,
        int8_accuracy=float((int8_label == faces.targets).mean()) if labelled else None,
    )


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files' contents in path order (a SavedModel)."""
    digest = hashlib.sha256()
    for file in _files(path):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    """Bytes in a file, or in all files under a folder."""
    return sum(file.stat().st_size for file in _files(path))


def write_model(
    flatbuffer: bytes, metadata: ModelMetadata, output: Path, samples: np.ndarray, gate_model: bytes | None = None
) -> None:
    """Writes the model file with its metadata and a self-test made from a few of `samples`
    (crops), answered by the written int8 model itself on LiteRT. gate_model: the int8 network of
    the gate that `metadata.gate` describes."""
    output.write_bytes(artefact.embed(flatbuffer, replace(metadata, self_test=None), gate_model))
    self_test = make_self_test(load_recognizer(output).outputs, samples, metadata.preprocessing)
    output.write_bytes(artefact.embed(flatbuffer, replace(metadata, self_test=self_test), gate_model))
