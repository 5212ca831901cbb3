"""`edgeface eval`: how well a model names the people it knows and refuses the ones it does not.

Works on anything that turns crops into probabilities: an int8 `.tflite` on LiteRT here, or a
float Keras model on the workstation, so both are measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeface.artefact import ModelMetadata
from edgeface.dataset import folder_images, load_faces
from edgeface.metrics import classification_report, format_report
from edgeface.openset import UnknownRule

Probabilities = Callable[[np.ndarray], np.ndarray]  # float32 crops (n, h, w, c) -> (n, n_labels)


def evaluate_folder(
    folder: str | Path,
    metadata: ModelMetadata,
    probabilities: Probabilities,
    extra_strangers: np.ndarray | None = None,
    keep_no_face: bool = False,
) -> dict:
    """Metrics on `folder/<label>/` images, plus the unknown rule's effect.

    Sub-folders named after the model's labels are known people; any other sub-folder holds
    strangers, as do `extra_strangers` (preprocessed crops).
    """
    faces = load_faces(folder_images(folder, metadata.labels), metadata.labels, metadata.preprocessing, keep_no_face)
    known = faces.targets >= 0
    known_probabilities = probabilities(faces.crops[known])
    stranger_crops = faces.crops[~known]
    if extra_strangers is not None and len(extra_strangers):
        stranger_crops = np.concatenate([stranger_crops, extra_strangers])
    report = classification_report(faces.targets[known], known_probabilities.argmax(axis=1), metadata.labels)
    report["no_face"] = faces.no_face
    report["unreadable"] = faces.unreadable
    report["open_set"] = open_set_report(
        metadata.unknown_rule, known_probabilities, faces.targets[known], probabilities(stranger_crops)
    )
    return report


def open_set_report(
    rule: UnknownRule | None, known: np.ndarray, truth: np.ndarray, strangers: np.ndarray
) -> dict:
    """What the rule does to known faces (rejected, accuracy of the rest) and to strangers (false accepts)."""
    if rule is None:
        return {"rule": None, "strangers": len(strangers)}
    rejected = rule.unknown(known)
    accepted_correct = (known.argmax(axis=1) == truth) & ~rejected
    return {
        "rule": rule.to_dict(),
        "known_rejected": float(rejected.mean()) if len(known) else 0.0,
        "accuracy_of_accepted": float(accepted_correct.sum() / max(1, (~rejected).sum())),
        "strangers": len(strangers),
        "false_accept": float((~rule.unknown(strangers)).mean()) if len(strangers) else None,
    }


def format_evaluation(report: dict) -> str:
    """The report as text: the metrics table, then the unknown rule's effect."""
    lines = [format_report(report)]
    open_set = report["open_set"]
    if open_set["rule"] is None:
        lines.append("unknown rule: none (the model was converted without stranger faces)")
    else:
        rule = open_set["rule"]
        lines.append(
            f"unknown rule: confidence >= {rule['min_confidence']:.3f}, margin >= {rule['min_margin']:.3f} "
            f"(calibrated for {100 * rule['target_false_accept']:.1f} % false accepts on {rule['strangers']} strangers)"
        )
        lines.append(
            f"known faces rejected as unknown: {100 * open_set['known_rejected']:.1f} %; "
            f"accuracy of the accepted: {100 * open_set['accuracy_of_accepted']:.1f} %"
        )
        if open_set["false_accept"] is not None:
            lines.append(f"strangers accepted: {100 * open_set['false_accept']:.1f} % of {open_set['strangers']}")
    if report["no_face"]:
        lines.append(f"{len(report['no_face'])} images without a detected face were left out")
    return "\n".join(lines)
