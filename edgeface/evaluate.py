"""`edgeface eval`: how well a model names the people it knows and refuses the ones it does not.

Works on anything that turns crops into predictions: an int8 `.tflite` on LiteRT here, or a float
Keras model on the workstation, classifier or embedder, so all are measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeface.dataset import folder_images, load_faces
from edgeface.metrics import classification_report, format_report
from edgeface.results import Prediction
from edgeface.preprocess import Preprocessing

Classify = Callable[[np.ndarray], list[Prediction]]  # float32 crops (n, h, w, c) -> a Prediction each


def evaluate_folder(
    folder: str | Path,
    labels: Sequence[str],
    spec: Preprocessing,
    classify: Classify,
    rule: str | None,
    extra_strangers: np.ndarray | None = None,
    keep_no_face: bool = False,
) -> dict:
    """Metrics on `folder/<label>/` images, plus the unknown rule's effect.

    Sub-folders named after one of `labels` are known people; any other sub-folder holds
    strangers, as do `extra_strangers` (preprocessed crops). `rule` describes the unknown rule
    (None: the model has none).
    """
    labels = tuple(labels)
    if not labels:
        raise ValueError("the model knows nobody yet: enrol people, or train it on DIR/<person>/ photos")
    faces = load_faces(folder_images(folder, labels), labels, spec, keep_no_face)
    known = faces.targets >= 0
    known_predictions = classify(faces.crops[known])
    stranger_crops = faces.crops[~known]
    if extra_strangers is not None and len(extra_strangers):
        stranger_crops = np.concatenate([stranger_crops, extra_strangers])
    predicted = np.array([labels.index(p.label) for p in known_predictions], dtype=np.int64)
    report = classification_report(faces.targets[known], predicted, labels)
    report["no_face"] = faces.no_face
    report["unreadable"] = faces.unreadable
    report["open_set"] = open_set_report(rule, known_predictions, faces.targets[known] == predicted,
                                         classify(stranger_crops))  # fmt: skip
    return report


def open_set_report(
    rule: str | None, known: list[Prediction], correct: np.ndarray, strangers: list[Prediction]
) -> dict:
    """What the rule does to known faces (rejected, accuracy of the rest) and to strangers (false accepts)."""
    if rule is None:
        return {"rule": None, "strangers": len(strangers)}
    rejected = np.array([p.unknown for p in known], dtype=bool)
    return {
        "rule": rule,
        "known_rejected": float(rejected.mean()) if len(known) else 0.0,
        "accuracy_of_accepted": float((correct & ~rejected).sum() / max(1, (~rejected).sum())),
        "strangers": len(strangers),
        "false_accept": float(np.mean([not p.unknown for p in strangers])) if strangers else None,
    }


def format_evaluation(report: dict) -> str:
    """The report as text: the metrics table, then the unknown rule's effect."""
    lines = [format_report(report)]
    open_set = report["open_set"]
    if open_set["rule"] is None:
        lines.append("unknown rule: none (the model was converted without stranger faces)")
    else:
        lines.append(f"unknown rule: {open_set['rule']}")
        lines.append(
            f"known faces rejected as unknown: {100 * open_set['known_rejected']:.1f} %; "
            f"accuracy of the accepted: {100 * open_set['accuracy_of_accepted']:.1f} %"
        )
        if open_set["false_accept"] is not None:
            lines.append(f"strangers accepted: {100 * open_set['false_accept']:.1f} % of {open_set['strangers']}")
    if report["no_face"]:
        lines.append(f"{len(report['no_face'])} images without a detected face were left out")
    return "\n".join(lines)
