"""Classification metrics people read: accuracy, per-label precision/recall/F1, confusion matrix.

numpy only, so `train` on the workstation and evaluation on the device report the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_labels: int) -> np.ndarray:
    """int64 (n_labels, n_labels): row = true label index, column = predicted label index."""
    matrix = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def classification_report(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro averages, a per-label table and the confusion matrix, as plain JSON-able data.

    A label never predicted has precision 0; a label absent from `truth` has recall 0.
    """
    matrix = confusion_matrix(truth, predicted, len(labels))
    hits = np.diag(matrix).astype(np.float64)
    predicted_counts = matrix.sum(axis=0)
    true_counts = matrix.sum(axis=1)
    precision = np.divide(hits, predicted_counts, out=np.zeros_like(hits), where=predicted_counts > 0)
    recall = np.divide(hits, true_counts, out=np.zeros_like(hits), where=true_counts > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return {
        "samples": int(matrix.sum()),
        "accuracy": float(hits.sum() / max(1, matrix.sum())),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_label": [
            {
                "label": label,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(true_counts[i]),
            }
            for i, label in enumerate(labels)
        ],
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict) -> str:
    """The report as a small text table, confusion matrix included."""
    labels = report["labels"]
    width = max(8, *(len(label) for label in labels))
    lines = [
        f"accuracy {report['accuracy']:.3f}  macro precision {report['macro_precision']:.3f}  "
        f"recall {report['macro_recall']:.3f}  F1 {report['macro_f1']:.3f}  ({report['samples']} samples)",
        f"{'label':<{width}}  precision  recall     F1  support",
    ]
    for row in report["per_label"]:
        lines.append(
            f"{row['label']:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    lines.append("confusion matrix (rows: true, columns: predicted)")
    lines.append(" " * width + "  " + " ".join(f"{label[:6]:>6}" for label in labels))
    for label, row in zip(labels, report["confusion_matrix"]):
        lines.append(f"{label:<{width}}  " + " ".join(f"{count:6d}" for count in row))
    return "\n".join(lines)
