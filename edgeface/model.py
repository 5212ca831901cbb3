"""An edgeface model file loaded and checked against its metadata, run on face crops.

`TFLiteModel` runs any edgeface model (on an `edgeface.interpreter.Network`) with the face-quality gate it
carries, if any; `FaceClassifier` turns a classifier's outputs into labels (an embedder's are named in
`edgeface.embedder`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edgeface import artefact
from edgeface.artefact import MetadataError, ModelMetadata
from edgeface.gate import QualityGate
from edgeface.interpreter import ModelError, Network
from edgeface.openset import UnknownRule
from edgeface.paths import read_regular_file
from edgeface.results import Prediction


MAX_MODEL_BYTES = 512 << 20  # the embedder is about 23 MB as float32; a model file is bounded like any input


def read_model_file(path: str | Path) -> bytes:
    """The bytes of a model file; ModelError when it cannot be read."""
    try:
        return read_regular_file(path, MAX_MODEL_BYTES)
    except OSError as error:
        raise ModelError(f"cannot read model {path}: {error.strerror}") from None


class TFLiteModel:
    """An edgeface `.tflite` model loaded on LiteRT, checked against its own metadata.

    content: the file's bytes when the caller has read them already.
    gate: the face-quality gate the file carries (scan, watch and enroll apply it), or None.
    """

    def __init__(self, path: str | Path, threads: int | None = None, content: bytes | None = None) -> None:
        self.path = Path(path)
        content = read_model_file(path) if content is None else content
        if content[4:8] != artefact.TFLITE_IDENTIFIER:
            raise ModelError(f"{path} is not a TFLite model")
        # The flatbuffer first: a file cut short is then called damaged, not "without metadata".
        self._network = Network(content, str(path), threads)
        try:
            self.metadata: ModelMetadata = artefact.read(content, name=str(path))
        except MetadataError as error:
            raise ModelError(str(error)) from None
        self.sha256 = hashlib.sha256(content).hexdigest()
        self._check_shapes()
        self.gate = QualityGate(content, self.metadata, str(path), threads) if self.metadata.gate else None

    @property
    def labels(self) -> tuple[str, ...]:
        """The names this model can give a face."""
        return self.metadata.labels

    def _check_shapes(self) -> None:
        expected_input = self.metadata.preprocessing.input_shape
        actual_input = self._network.input_shape
        if actual_input != expected_input:
            raise ModelError(f"{self.path}: input shape {actual_input} does not match its preprocessing {expected_input}")
        if self._network.output_shape[-1:] != (self.metadata.output_units,):
            what = (f"an embedding of {self.metadata.embedding_size}" if self.metadata.kind == "embedder"
                    else f"{len(self.labels)} labels with a {self.metadata.output} output")  # fmt: skip
            raise ModelError(f"{self.path}: {self._network.output['shape'][-1]} outputs do not match {what}")

    def describe(self) -> dict:
        """What `edgeface info` shows: tensors with dtype and quantization, op counts, metadata, file facts."""

        def tensor(details: dict) -> dict:
            scale, zero_point = details["quantization"]
            return {
                "name": details["name"],
                "shape": [int(n) for n in details["shape"]],
                "dtype": np.dtype(details["dtype"]).name,
                "scale": float(scale),
                "zero_point": int(zero_point),
            }

        metadata = self.metadata.to_dict()
        if "gallery" in metadata:  # people and counts, not thousands of numbers
            metadata["gallery"] = {"dimensions": self.metadata.gallery.dimensions, "people": self.metadata.gallery.counts()}
        return {
            "path": str(self.path),
            "size": self.path.stat().st_size,
            "sha256": self.sha256,
            "network_sha256": self.network_sha256,
            "input": tensor(self._network.input),
            "output": tensor(self._network.output),
            "ops": self._network.op_counts(),
            "rule": self.rule_text(),
            "metadata": metadata,
            "gate": self.gate.describe() if self.gate else None,
        }

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """The model's raw outputs for a batch, in one interpreter call.

        Args:
            crops: float32 (n, height, width, channels) from `preprocess.crop_faces`.
        Returns:
            float32 (n, units): one probability per label (softmax), of labels[1] (sigmoid), or
            the embedding.
        """
        if len(crops) == 0:
            return np.empty((0, self.metadata.output_units), dtype=np.float32)
        return self._network.run(crops).reshape(len(crops), -1)

    def outputs(self, crops: np.ndarray) -> np.ndarray:
        """What the self-test compares: probabilities (classifier) or embeddings (embedder)."""
        return self.scores(crops)

    def use_enrolments(self, enrolments: object) -> None:
        """People enrolled on the device; only an embedder can use them, a classifier ignores them."""

    @property
    def network_sha256(self) -> str | None:
        """The identity enrolments are tied to; None for a model that cannot take enrolments."""
        return None

    def rule_text(self) -> str | None:
        """The unknown rule for people, or None when the model has none."""
        raise NotImplementedError


class FaceClassifier(TFLiteModel):
    """A classifier: one probability per label, named by the top one and its unknown rule."""

    def __init__(self, path: str | Path, threads: int | None = None, content: bytes | None = None) -> None:
        super().__init__(path, threads, content)
        if self.metadata.kind != "classifier":
            raise ModelError(f"{path} is an {self.metadata.kind}, not a classifier")

    def outputs(self, crops: np.ndarray) -> np.ndarray:
        return self.probabilities(crops)

    def rule_text(self) -> str | None:
        """The unknown rule for people, or None when the model has none."""
        rule = self.metadata.unknown_rule
        return rule.describe() if rule else None

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(n, n_labels) probabilities for a batch of crops (see `scores`)."""
        return label_probabilities(self.scores(crops), self.metadata.output)

    def classify(self, crops: np.ndarray) -> list[Prediction]:
        """One Prediction per crop (see `scores` for the input), with the unknown rule applied."""
        return predictions_from_probabilities(self.probabilities(crops), self.labels, self.metadata.unknown_rule)


def predictions_from_probabilities(
    probabilities: np.ndarray, labels: tuple[str, ...], rule: UnknownRule | None
) -> list[Prediction]:
    """The top label of each row of (n, n_labels) probabilities, with `rule` applied."""
    unknown = rule.unknown(probabilities) if rule else np.zeros(len(probabilities), dtype=bool)
    best = np.argmax(probabilities, axis=1)
    return [Prediction(labels[i], float(row[i]), bool(rejected)) for i, row, rejected in zip(best, probabilities, unknown)]


def label_probabilities(scores: np.ndarray, output: str) -> np.ndarray:
    """(n, n_labels) probabilities from model outputs (n, units); a sigmoid unit p becomes [1 - p, p]."""
    if output == "sigmoid":
        return np.concatenate([1.0 - scores[:, :1], scores[:, :1]], axis=1)
    return scores

