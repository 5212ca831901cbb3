"""One way in for every kind of model: `load_recognizer` picks the class from the model's metadata,
so scan, watch, tracking and the log work the same with a classifier and an embedder."""

from __future__ import annotations

from pathlib import Path

from edgeface import artefact
from edgeface.artefact import MetadataError
from edgeface.embedder import FaceEmbedder
from edgeface.model import FaceClassifier, ModelError, read_model_file

Recognizer = FaceClassifier | FaceEmbedder


KERAS_SUFFIXES = (".h5", ".keras")


def load_recognizer(path: str | Path, threads: int | None = None) -> Recognizer:
    """The model at `path`, loaded as the kind its metadata says; ModelError says what is wrong."""
    if Path(path).suffix.lower() in KERAS_SUFFIXES or Path(path, "saved_model.pb").is_file():
        raise ModelError(f"{path} is a Keras model, for the workstation; make the device's int8 model from it with "
                         f"`edgeface convert {path}`, then pass the .tflite")  # fmt: skip
    content = read_model_file(path)
    try:
        kind = artefact.read(content, name=str(path)).kind
    except MetadataError:
        kind = "classifier"  # its constructor checks the file in order and names the problem
    model_class = FaceEmbedder if kind == "embedder" else FaceClassifier
    return model_class(path, threads, content)
