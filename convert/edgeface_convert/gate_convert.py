"""`convert --gate`: the face-quality gate quantized to full int8 for the model file that carries it.

The gate's own training crops set the int8 ranges; its held-out faces check the int8 gate against the float one
(the Pearson correlation of their errors) and set the threshold again on the int8 errors, since those are the
numbers the device compares with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeface.artefact import GateSpec
from edgeface.gate import reconstruction_scores
from edgeface.interpreter import Network
from edgeface.preprocess import Preprocessing
from edgeface_convert.autoencoder import reconstruction_errors
from edgeface_convert.common import CommandError
from edgeface_convert.gate_file import load_gate
from edgeface_convert.gate_train import keep_threshold
from edgeface_convert.keras_io import SourceModel
from edgeface_convert.quantize import to_int8_flatbuffer

MIN_CORRELATION = 0.9  # below it the int8 gate ranks crops too unlike the float one: convert exits 3
SHARED_CROP = ("detector", "alignment", "margin")  # where gate and model must find and cut faces alike
SMALLEST_THRESHOLD = 1e-6  # a gate's threshold must be above 0 (artefact.GateSpec)


@dataclass(frozen=True)
class GateReport:
    """Float vs int8 gate on its held-out faces; thresholds are mean squared errors, size in bytes."""

    held_out_faces: int
    correlation: float
    float_threshold: float
    threshold: float
    keep: float
    size: int

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"gate: {self.size:,} B int8; on {self.held_out_faces} held-out faces int8 vs float error "
                f"correlation {self.correlation:.3f}; threshold {self.threshold:.5f} int8 ({self.float_threshold:.5f} "
                f"float), keeping {100 * self.keep:.1f} % of them")  # fmt: skip


@dataclass(frozen=True)
class ConvertedGate:
    """What the model file carries (the spec and the int8 network) and what convert reports of it."""

    spec: GateSpec
    network: bytes
    report: GateReport

    @property
    def passed(self) -> bool:
        return self.report.correlation >= MIN_CORRELATION


def check_crops_alike(gate: Preprocessing, model: Preprocessing, path: str) -> None:
    """CommandError unless the gate finds and cuts faces as the model does."""
    mine, theirs = gate.to_dict(), model.to_dict()
    differing = [f"{key} {mine[key]} (the model's: {theirs[key]})" for key in SHARED_CROP if mine[key] != theirs[key]]
    if differing:
        raise CommandError(f"--gate {path} crops faces unlike the model, by its {'; '.join(differing)}: train the gate "
                           "with --like MODEL")  # fmt: skip


def int8_errors(network: bytes, crops: np.ndarray) -> np.ndarray:
    """float32 (n,): the int8 gate's score of each crop (float32 in 0..1), run and scored as the runtime does."""
    return reconstruction_scores(Network(network, "the int8 gate").run(crops), crops)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two score lists; 0 where either does not vary (nothing to follow)."""
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.clip(np.corrcoef(a, b)[0, 1], -1.0, 1.0))


def convert_gate(path: str, model: Preprocessing) -> ConvertedGate:
    """The gate in `path`, for a model that crops faces as `model` says, quantized and checked."""
    gate = load_gate(path)
    check_crops_alike(gate.preprocessing, model, path)
    network = to_int8_flatbuffer(SourceModel(Path(path), keras_model=gate.model), gate.training_crops)
    float_scores = reconstruction_errors(gate.model, gate.held_out_crops)
    int8_scores = int8_errors(network, gate.held_out_crops)
    threshold = max(keep_threshold(int8_scores, gate.keep), SMALLEST_THRESHOLD)
    report = GateReport(
        held_out_faces=len(int8_scores),
        correlation=correlation(float_scores, int8_scores),
        float_threshold=gate.threshold,
        threshold=threshold,
        keep=float(np.mean(int8_scores <= threshold)),
        size=len(network),
    )
    spec = GateSpec(gate.preprocessing, threshold, gate.keep, len(int8_scores), report.correlation)
    return ConvertedGate(spec, network, report)
