"""An embedder model: each face becomes an embedding, named by the nearest person of a gallery.

The gallery is the model's own (made by `edgeface train`) plus the people enrolled on the device
(`edgeface enroll`, kept in the log), so people are added without retraining and without
TensorFlow. The unknown rule is a distance (see `edgeface.gallery`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeface import artefact
from edgeface.detect import WholeImageSettings, YuNetSettings
from edgeface.gallery import DEFAULT_RULE, DistanceRule, Enrolments, Gallery, GalleryError, confidence_of
from edgeface.model import ModelError, TFLiteModel, read_model_file
from edgeface.results import Prediction


# An embedder needs faces aligned by the five landmarks only yunet gives, or crops already aligned.
EMBEDDER_DETECTORS = (YuNetSettings.name, WholeImageSettings.name)


def detector_problem(name: str) -> str | None:
    """Why an embedder cannot find faces with detector `name`, or None when it can."""
    if name in EMBEDDER_DETECTORS:
        return None
    return (
        f"--detector {name}: the embedder needs faces aligned by their five landmarks, which only yunet gives: "
        "use --detector yunet (its ONNX file: --yunet-model FILE), or --detector none for aligned face crops"
    )


class FaceEmbedder(TFLiteModel):
    """An embedder `.tflite` with its gallery and distance rule, ready to name preprocessed crops."""

    def __init__(self, path: str | Path, threads: int | None = None, content: bytes | None = None) -> None:
        content = read_model_file(path) if content is None else content
        super().__init__(path, threads, content)
        if self.metadata.kind != "embedder":
            raise ModelError(f"{path} is a {self.metadata.kind}, not an embedder")
        self._network_sha256 = artefact.network_sha256(content)
        self._own = self.metadata.gallery or Gallery.empty(self.metadata.embedding_size)
        self.gallery = self._own
        self.rule: DistanceRule = self.metadata.distance_rule or DEFAULT_RULE

    @property
    def labels(self) -> tuple[str, ...]:
        """Everyone it can name: its own gallery and the people enrolled in the log."""
        return self.gallery.people

    @property
    def network_sha256(self) -> str:
        return self._network_sha256

    def use_enrolments(self, enrolments: Enrolments) -> None:
        """Compares faces with the model's own gallery as `enrolments` changes it from now on."""
        try:
            self.gallery = enrolments.applied_to(self._own)
        except GalleryError as error:
            raise ModelError(f"{self.path}: the enrolled people do not fit this model: {error}") from None

    def rule_text(self) -> str:
        source = "" if self.metadata.distance_rule else " (the default: the model was made without strangers)"
        return self.rule.describe() + source

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """float32 (n, embedding_size) embeddings of preprocessed crops."""
        return self.scores(crops)

    def classify(self, crops: np.ndarray) -> list[Prediction]:
        """One Prediction per crop: the nearest person, 1 − distance as the confidence, unknown
        beyond the rule's distance."""
        return self.name(self.embed(crops))

    def name(self, embeddings: np.ndarray) -> list[Prediction]:
        """Predictions for embeddings made by this model."""
        return predictions_from_distances(self.gallery, embeddings, self.rule)


def predictions_from_distances(gallery: Gallery, embeddings: np.ndarray, rule: DistanceRule) -> list[Prediction]:
    """The nearest person of `gallery` for each embedding, 1 − distance as the confidence, unknown
    beyond the rule's distance (and always, with an empty gallery)."""
    names, distances = gallery.nearest(embeddings, rule.method)
    return [
        Prediction(name, float(confidence_of(distance)), bool(distance > rule.max_distance),
                   float(distance) if np.isfinite(distance) else None)  # fmt: skip
        for name, distance in zip(names, distances)
    ]
