"""Keras model files with edgeface's metadata kept inside them (HDF5 attributes of the root group).

`train` writes the labels and preprocessing into the `.h5`, so `convert` needs no other file.
Loading keeps Keras' safe mode: a model file never runs code of its own (e.g. a `Lambda` layer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import keras

from edgeface.artefact import ModelMetadata

METADATA_ATTRIBUTE = "edgeface_metadata"
TRAINING_ATTRIBUTE = "edgeface_training"


def save_trained(model: keras.Model, path: str | Path, metadata: ModelMetadata, training: dict) -> None:
    """Writes `model` as HDF5 with the metadata and `training` facts (data folder, validation split)."""
    # `train -o model.h5` is the documented form; Keras' note that HDF5 is "legacy" is not the user's concern.
    with _without_hdf5_notice():
        model.save(str(path))
    with h5py.File(path, "a") as file:
        file.attrs[METADATA_ATTRIBUTE] = metadata.to_json()
        file.attrs[TRAINING_ATTRIBUTE] = json.dumps(training, sort_keys=True)


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


def load_trained(path: str | Path) -> tuple[keras.Model, ModelMetadata | None, dict]:
    """The model, its metadata (None for a model `train` did not make) and its training facts."""
    model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    metadata, training = None, {}
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as file:
            if METADATA_ATTRIBUTE in file.attrs:
                metadata = ModelMetadata.from_json(file.attrs[METADATA_ATTRIBUTE])
            if TRAINING_ATTRIBUTE in file.attrs:
                training = json.loads(file.attrs[TRAINING_ATTRIBUTE])
    return model, metadata, training
