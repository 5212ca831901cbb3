"""`edgeface train-gate`: the face-quality gate, an autoencoder of unlabelled real faces whose reconstruction error
says how little a crop looks like a face.

The faces are found as `train` finds them (the largest face of each photo, `load_faces`), with the detector,
alignment and margin of the model the gate will serve, and cropped grey and small for the gate. A share is held
out; the threshold is the error that `keep` of those unseen faces stay under.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeface.preprocess import Preprocessing
from edgeface_convert.autoencoder import GATE_CODE, build_autoencoder, fit_autoencoder, gate_encoder, reconstruction_errors
from edgeface_convert.common import CommandError, load_unlabelled_faces, note
from edgeface_convert.embedder_train import embedder_preprocessing
from edgeface_convert.gate_file import MAX_STORED_CROPS, TrainedGate, save_gate
from edgeface_convert.keras_io import ModelLoadError, load_source
from edgeface_convert.options import EMBEDDER_DETECTOR, GateOptions

HELD_OUT_SHARE = 0.15
MIN_HELD_OUT = 5  # fewer would make a threshold of one or two faces
MIN_FACES = 20


def keep_threshold(errors: np.ndarray, keep: float) -> float:
    """The smallest error that at least `keep` of `errors` are at most (so a share `keep` of them passes)."""
    return float(np.quantile(errors, keep, method="inverted_cdf"))


def gate_preprocessing(served: Preprocessing, size: int) -> Preprocessing:
    """The gate's crop: where `served` (the model's) crops faces, grey, size×size, values 0..1."""
    return replace(served, color="gray", width=size, height=size, value_range=(0.0, 1.0))


def split_held_out(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) indices of `count` faces: HELD_OUT_SHARE of them, at least MIN_HELD_OUT, held out."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(MIN_HELD_OUT, round(count * HELD_OUT_SHARE))
    return np.sort(order[held:]), np.sort(order[:held])


def train_gate(crops: np.ndarray, spec: Preprocessing, keep: float, epochs: int, seed: int) -> TrainedGate:
    """A gate trained on most of `crops` (float32, the gate's crops) and calibrated on the rest."""
    training, held_out = (crops[indices] for indices in split_held_out(len(crops), seed))
    model = build_autoencoder(spec.input_shape, gate_encoder(), GATE_CODE, "edgeface_gate")
    fit_autoencoder(model, training, epochs, seed, "training the gate")
    threshold = keep_threshold(reconstruction_errors(model, held_out), keep)
    stored = training[np.linspace(0, len(training) - 1, min(len(training), MAX_STORED_CROPS)).astype(int)]
    return TrainedGate(model, spec, threshold, keep, stored, held_out)


def _served_preprocessing(options: GateOptions) -> Preprocessing:
    """The detector, alignment and margin of --like's model, else of train's embedder with --detector."""
    if options.like is None:
        return embedder_preprocessing(options.detector or EMBEDDER_DETECTOR).with_detector(model=options.yunet_model)
    try:
        metadata = load_source(options.like, yunet_model=options.yunet_model).metadata
    except ModelLoadError as error:
        raise CommandError(f"--like: {error}") from None
    if metadata is None:
        raise CommandError(f"--like {options.like} carries no edgeface preprocessing: name a model `edgeface train` made")
    return metadata.preprocessing


def run_train_gate(options: GateOptions) -> int:
    spec = gate_preprocessing(_served_preprocessing(options), options.size)
    faces = load_unlabelled_faces(options.faces, spec)
    if len(faces.crops) < MIN_FACES:
        raise CommandError(f"found {len(faces.crops)} faces in {', '.join(options.faces)}; a gate needs at least "
                           f"{MIN_FACES} (hundreds learn faces better)")  # fmt: skip
    gate = train_gate(faces.crops, spec, options.keep, options.epochs, options.seed)
    training_count = len(faces.crops) - len(gate.held_out_crops)
    note(f"trained on {training_count} faces; held out {len(gate.held_out_crops)} to calibrate the threshold")
    facts = {"faces": [str(Path(source).resolve()) for source in options.faces], "seed": options.seed,
             "epochs": options.epochs, "training_faces": training_count}  # fmt: skip
    save_gate(gate, options.output, facts)
    result = {"output": options.output, "faces": len(faces.crops), "training_faces": training_count,
              "held_out_faces": len(gate.held_out_crops), "threshold": gate.threshold, "keep": gate.keep,
              "preprocessing": spec.to_dict()}  # fmt: skip
    if options.json:
        print(json.dumps(result))
    else:
        print(f"wrote {options.output}: a {spec.width}×{spec.height} grey gate of {len(faces.crops)} faces; "
              f"threshold {gate.threshold:.5f} (mean squared error), which at least {100 * gate.keep:.1f} % of the "
              f"{len(gate.held_out_crops)} held-out faces stay under")  # fmt: skip
    return 0
