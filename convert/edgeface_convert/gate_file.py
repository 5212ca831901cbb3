"""The face-quality gate's Keras file, as `train-gate` writes it and `convert --gate` reads it.

Beside the network, the HDF5 file keeps the gate's facts (its preprocessing, float threshold and keep share) and its
own crops as uint8: a sample of the training faces, which calibrate the int8 ranges, and the held-out faces, on
which convert checks the int8 gate and sets its threshold again. Carried in the file, they are exactly the crops the
gate was made with, even when the photos have moved; at 32×32 grey they take about 1 kB a face, and the file stays
on the workstation (the model file carries only the int8 network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np

from edgeface.preprocess import Preprocessing, pixels_to_values, values_to_pixels
from edgeface_convert.common import CommandError
from edgeface_convert.keras_io import ModelLoadError, load_source, save_with, stored_text

GATE_ATTRIBUTE = "edgeface_gate"
TRAINING_CROPS, HELD_OUT_CROPS = "edgeface_gate_training_crops", "edgeface_gate_held_out_crops"
MAX_STORED_CROPS = 300  # training faces kept for int8 calibration: 100-500 set the ranges well


@dataclass(frozen=True)
class TrainedGate:
    """A float gate: its network, its crop, its threshold (the largest error that passes, from held-out faces) and
    its crops, float32 (n, height, width, channels) in 0..1."""

    model: keras.Model
    preprocessing: Preprocessing
    threshold: float
    keep: float
    training_crops: np.ndarray
    held_out_crops: np.ndarray


def save_gate(gate: TrainedGate, path: str | Path, facts: dict) -> None:
    """Writes the gate with its facts and crops; `facts` (where the faces came from, epochs) are kept beside them."""
    document = {"preprocessing": gate.preprocessing.to_dict(), "threshold": gate.threshold, "keep": gate.keep, **facts}
    arrays = {TRAINING_CROPS: values_to_pixels(gate.training_crops, gate.preprocessing),
              HELD_OUT_CROPS: values_to_pixels(gate.held_out_crops, gate.preprocessing)}  # fmt: skip
    save_with(gate.model, path, {GATE_ATTRIBUTE: json.dumps(document, sort_keys=True)}, arrays)


def load_gate(path: str | Path) -> TrainedGate:
    """The gate in `path`; CommandError says why a file is not one `train-gate` wrote."""
    not_a_gate = f"--gate {path} is not a gate from `edgeface train-gate`"
    try:
        model = load_source(path).keras_model
        with h5py.File(path, "r") as file:
            text = stored_text(file, GATE_ATTRIBUTE)
            if text is None or not all(isinstance(file.get(name), h5py.Dataset) for name in (TRAINING_CROPS, HELD_OUT_CROPS)):
                raise CommandError(f"{not_a_gate} (no gate facts or crops in it)")
            stored = [np.asarray(file[name][()]) for name in (TRAINING_CROPS, HELD_OUT_CROPS)]
        document = json.loads(text)
        spec = Preprocessing.from_dict(document["preprocessing"])
        threshold, keep = float(document["threshold"]), float(document["keep"])
    except (ModelLoadError, OSError, ValueError, KeyError, TypeError) as error:  # PreprocessingError is a ValueError
        raise CommandError(f"{not_a_gate}: {error}") from None
    shape = spec.input_shape
    fits = model is not None and tuple(model.input_shape[1:]) == shape and tuple(model.output_shape[1:]) == shape
    if not fits or any(crops.dtype != np.uint8 or crops.shape[1:] != shape or not len(crops) for crops in stored):
        raise CommandError(f"{not_a_gate}: its network or crops do not have the shape of its preprocessing {shape}")
    if spec.value_range != (0.0, 1.0) or not 0.5 <= keep <= 1:
        raise CommandError(f"{not_a_gate}: value range {list(spec.value_range)} or keep {keep} out of bounds")
    training, held_out = (pixels_to_values(crops, spec) for crops in stored)
    return TrainedGate(model, spec, threshold, keep, training, held_out)

