"""The face-quality gate at run time: how little a crop looks like a face, before anyone names it.

A model may carry a gate (`artefact.GateSpec` in its metadata, its int8 network as the file's `gate.tflite`): an
autoencoder trained on real face crops. A crop's score is the mean squared difference between the gate's
reconstruction and the crop itself (pixels scaled to 0..1, over every pixel and channel); a crop passes when its
score is at most the spec's threshold. A detector's false positive or a bad crop reconstructs badly, scores high,
and is neither named nor enrolled (`Pipeline.faces_in`, `edgeface.enroll`).

The gate's network is input like the rest of the model file: its shapes must be the spec's, and anything else
about it that does not fit is one `ModelError` at load, never a traceback later.
"""

from __future__ import annotations

import numpy as np

from edgeface import artefact
from edgeface.artefact import GateSpec, MetadataError, ModelMetadata
from edgeface.interpreter import ModelError, Network
from edgeface.preprocess import Preprocessing

GATE_VALUE_RANGE = (0.0, 1.0)  # the contract's scale of both the crop and its reconstruction


class QualityGate:
    """A model file's gate, loaded on LiteRT and checked against its spec.

    model: the whole model file's bytes; metadata: what `artefact.read` found in them (with a gate).
    threads: LiteRT's threads, as the model's own.
    """

    def __init__(self, model: bytes, metadata: ModelMetadata, name: str, threads: int | None = None) -> None:
        gate_name, spec = f"{name}'s gate", metadata.gate
        try:
            content = artefact.read_gate_model(model, name)
        except MetadataError as error:
            raise ModelError(str(error)) from None
        _check_spec(spec.preprocessing, metadata.preprocessing, gate_name)
        self.spec: GateSpec = spec
        self.size = len(content)
        self._network = Network(content, gate_name, threads)
        if self._network.input_shape != spec.preprocessing.input_shape or self._network.output_shape != self._network.input_shape:
            raise ModelError(f"{gate_name}: input {self._network.input_shape} and output {self._network.output_shape} "
                             f"are not both {spec.preprocessing.input_shape}, as its preprocessing says")  # fmt: skip
        try:  # a network that loads may still fail to run, or to take a batch: said now, not at the first face
            self.scores(np.zeros((2, *spec.preprocessing.input_shape), np.float32))
        except (RuntimeError, ValueError) as error:
            raise ModelError(f"{gate_name} cannot run on a batch of crops: {error}") from None

    @property
    def preprocessing(self) -> Preprocessing:
        """How to crop a face for the gate (`preprocess.crop_faces`)."""
        return self.spec.preprocessing

    @property
    def threshold(self) -> float:
        """The largest score that passes."""
        return self.spec.threshold

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """Each crop's reconstruction error, in one interpreter call.

        Args:
            crops: float32 (n, height, width, channels) in 0..1, from `crop_faces` with `preprocessing`.
        Returns:
            float32 (n,) from 0 to 1: the mean squared difference between reconstruction and crop. A reconstruction
            outside 0..1 (only a crafted gate gives one) is clipped, and a non-finite one scores 1, so a score is
            always a number a log, an event and a comparison can hold.
        """
        if len(crops) == 0:
            return np.empty(0, np.float32)
        return reconstruction_scores(self._network.run(crops), crops)

    def passes(self, scores: np.ndarray) -> np.ndarray:
        """bool (n,): which scores pass the threshold."""
        return scores <= self.spec.threshold

    def describe(self) -> dict:
        """What `edgeface info` shows of the gate: its size, its crop and its calibration."""
        return {"bytes": self.size, "input": list(self._network.input_shape), "threshold": self.spec.threshold,
                "keep": self.spec.keep, "calibration_faces": self.spec.calibration_faces,
                "correlation": self.spec.correlation}  # fmt: skip


def reconstruction_scores(reconstruction: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """float32 (n,): the gate's score of each crop, the one definition training, convert and the runtime share: the
    mean squared difference between reconstruction (clipped to 0..1) and crop; a non-finite one scores 1."""
    clipped = np.clip(reconstruction, *GATE_VALUE_RANGE)
    scores = np.mean((clipped - crops) ** 2, axis=tuple(range(1, crops.ndim)))
    return np.where(np.isfinite(scores), scores, 1.0).astype(np.float32)


def _check_spec(gate: Preprocessing, model: Preprocessing, name: str) -> None:
    """ModelError unless the gate crops faces where the model does (detector, alignment, margin) in 0..1."""
    if gate.value_range != GATE_VALUE_RANGE:
        raise ModelError(f"{name}: its value_range is {list(gate.value_range)}, not {list(GATE_VALUE_RANGE)}")
    mine, theirs = gate.to_dict(), model.to_dict()
    differing = [key for key in ("detector", "alignment", "margin") if mine[key] != theirs[key]]
    if differing:
        raise ModelError(f"{name}: its {', '.join(differing)} differ from the model's, so it would judge other crops")
