"""Metrics people read after training, checked against a hand-worked example."""

import numpy as np
import pytest

from edgeface.metrics import classification_report, format_report


def test_report_matches_a_hand_worked_example():
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    report = classification_report(truth, predicted, ["a", "b", "c"])
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    a, b, c = report["per_label"]
    assert (a["precision"], a["recall"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
    assert (b["precision"], b["recall"], b["f1"]) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))
    assert (c["precision"], c["recall"]) == (pytest.approx(0.5), pytest.approx(1.0))
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_a_label_never_predicted_scores_zero_not_nan():
    report = classification_report(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    assert report["per_label"][1] == {"label": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_the_text_table_lists_every_label():
    text = format_report(classification_report(np.array([0, 1]), np.array([0, 1]), ["alice", "bob"]))
    assert "alice" in text and "bob" in text and "confusion matrix" in text
