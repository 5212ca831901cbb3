"""Reading and writing the float models that `convert` quantizes.

`train` writes HDF5 (`.h5`) with edgeface's metadata in attributes of the root group, so `convert`
needs no other file. `convert` also takes models made elsewhere: Keras 2 or 3 `.h5`, `.keras`,
and SavedModel folders. Loading keeps Keras' safe mode: a Keras file never runs Python code of its
own (a `Lambda` layer) unless the user says they trust it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from edgeface.artefact import ModelMetadata
from edgeface.model import label_probabilities
from edgeface_convert.embedder_net import ChannelPad  # noqa: F401 - registered with Keras, so embedder files load in safe mode

METADATA_ATTRIBUTE = "edgeface_metadata"
TRAINING_ATTRIBUTE = "edgeface_training"
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


class ModelLoadError(ValueError):
    """A model file that cannot, or may not, be loaded; the message says what to do."""


def save_trained(model: keras.Model, path: str | Path, metadata: ModelMetadata, training: dict) -> None:
    """Writes `model` as HDF5 with the metadata and `training` facts (data folder, validation split)."""
    save_with(model, path, {METADATA_ATTRIBUTE: metadata.to_json(), TRAINING_ATTRIBUTE: json.dumps(training, sort_keys=True)})


def save_with(model: keras.Model, path: str | Path, texts: dict[str, str], arrays: dict[str, np.ndarray] | None = None
              ) -> None:  # fmt: skip
    """Writes `model` as HDF5 with `texts` and `arrays` as datasets of those names at the root.

    Texts are byte datasets rather than attributes: an HDF5 attribute holds at most 64 kB, less
    than a gallery of a few hundred faces takes.
    """
    # `train -o model.h5` is the documented form; Keras' note that HDF5 is "legacy" is not the user's concern.
    with _without_hdf5_notice():
        model.save(str(path))
    with h5py.File(path, "a") as file:
        for name, text in texts.items():
            file.create_dataset(name, data=np.frombuffer(text.encode("utf-8"), dtype=np.uint8))
        for name, values in (arrays or {}).items():
            file.create_dataset(name, data=values, compression="gzip")


def stored_text(file: h5py.File, name: str) -> str | None:
    """A text `save_trained` stored: a byte dataset, or an attribute in files from earlier versions."""
    if name in file.attrs:
        return file.attrs[name]
    if isinstance(file.get(name), h5py.Dataset):
        return bytes(file[name][()]).decode("utf-8")
    return None


@contextmanager
def _without_hdf5_notice() -> Iterator[None]:
    def drop(record: logging.LogRecord) -> bool:
        return "HDF5 file" not in record.getMessage()

    logger = logging.getLogger("absl")  # Keras logs through absl
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@dataclass
class SourceModel:
    """A float model to quantize and to compare the int8 one with.

    metadata: what `train` stored (None for models made elsewhere); training: its training facts.
    """

    path: Path
    metadata: ModelMetadata | None = None
    training: dict = field(default_factory=dict)
    keras_model: keras.Model | None = None
    signature: object | None = None  # a SavedModel's serving function

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(height, width, channels) of one input."""
        if self.keras_model is not None:
            return tuple(self.keras_model.input_shape[1:])
        return tuple(self._signature_input().shape[1:])

    @property
    def output_units(self) -> int:
        if self.keras_model is not None:
            return int(self.keras_model.output_shape[-1])
        return int(next(iter(self.signature.structured_outputs.values())).shape[-1])

    def converter(self) -> tf.lite.TFLiteConverter:
        if self.keras_model is not None:
            return tf.lite.TFLiteConverter.from_keras_model(self.keras_model)
        return tf.lite.TFLiteConverter.from_saved_model(str(self.path))

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """float32 (n, units): the float model's raw outputs for preprocessed crops."""
        if len(crops) == 0:
            return np.empty((0, self.output_units), dtype=np.float32)
        if self.keras_model is not None:
            return np.asarray(self.keras_model.predict(crops, verbose=0, batch_size=64), dtype=np.float32)
        name = next(iter(self.signature.structured_input_signature[1]))
        outputs = [self.signature(**{name: tf.constant(crops[i : i + 64])}) for i in range(0, len(crops), 64)]
        return np.concatenate([next(iter(batch.values())).numpy() for batch in outputs]).astype(np.float32)

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(n, n_labels) probabilities: a single sigmoid unit p becomes [1 - p, p]."""
        return label_probabilities(self.scores(crops), "sigmoid" if self.output_units == 1 else "softmax")

    def _signature_input(self) -> tf.TensorSpec:
        return next(iter(self.signature.structured_input_signature[1].values()))


def load_source(path: str | Path, trust: bool = False, yunet_model: str | None = None) -> SourceModel:
    """Loads a Keras file or a SavedModel folder.

    trust: allow a Keras file to run Python code it carries (`Lambda` layers). Only for files from a
    source you trust; without it such a file is refused with an explanation.
    yunet_model: YuNet's file on this machine, for a model whose preprocessing finds faces with it.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"{path} is a folder without saved_model.pb, so not a SavedModel")
        loaded = tf.saved_model.load(str(path))
        if "serving_default" not in loaded.signatures:
            raise ModelLoadError(f"{path} has no serving_default signature to convert")
        return SourceModel(path, signature=loaded.signatures["serving_default"])
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelLoadError(f"{path}: expected a {', '.join(KERAS_SUFFIXES)} file or a SavedModel folder")
    try:
        model = keras.models.load_model(str(path), compile=False, safe_mode=not trust)
    except (OSError, ValueError, TypeError) as error:
        raise ModelLoadError(_explain(path, error)) from None
    metadata, training = None, {}
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as file:
            stored_metadata, stored_training = stored_text(file, METADATA_ATTRIBUTE), stored_text(file, TRAINING_ATTRIBUTE)
        if stored_metadata is not None:
            metadata = ModelMetadata.from_json(stored_metadata)
            metadata = replace(metadata, preprocessing=metadata.preprocessing.with_detector(model=yunet_model))
        if stored_training is not None:
            training = json.loads(stored_training)
    return SourceModel(path, metadata, training, keras_model=model)


def _explain(path: Path, error: Exception) -> str:
    text = str(error)
    if "Lambda" in text or "safe_mode" in text:
        return (
            f"{path} contains a Lambda layer: Python code that would run when the file is loaded. "
            "Keras' safe mode refuses it, and so does edgeface. If you trust where the file came "
            "from, pass --trust-model."
        )
    if "Unknown layer" in text or "Could not locate class" in text:
        return f"{path} uses a custom layer whose code is not available here: {text.splitlines()[0]}"
    return f"cannot load {path}: {text.splitlines()[0] if text else type(error).__name__}"
