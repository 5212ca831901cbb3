"""The unknown rule: calibrated on strangers to a false-accept rate, and refused with too few."""

import numpy as np
import pytest

from edgeface.openset import MIN_STRANGERS, NotEnoughStrangers, UnknownRule, calibrate


def softmax_rows(rng: np.random.Generator, n: int, labels: int, sharpness: float) -> np.ndarray:
    logits = rng.normal(size=(n, labels)) * sharpness
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("target", [0.01, 0.05])
def test_calibration_meets_the_target_on_the_strangers(target):
    rng = np.random.default_rng(0)
    known = softmax_rows(rng, 300, 5, sharpness=8.0)  # confident
    strangers = softmax_rows(rng, 400, 5, sharpness=1.0)  # hesitant
    rule = calibrate(known, np.ones(300, dtype=bool), strangers, target, "test", use_margin=True)
    assert rule.false_accept <= target
    assert (~rule.unknown(strangers)).mean() == pytest.approx(rule.false_accept)
    assert rule.known_accept == pytest.approx((~rule.unknown(known)).mean())
    assert rule.known_accept > 0.5  # confident known faces mostly pass
    assert rule.strangers == 400


def test_a_sigmoid_model_uses_confidence_only():
    rng = np.random.default_rng(1)
    p = rng.random(200)
    strangers = np.stack([1 - p, p], axis=1)
    rule = calibrate(strangers, np.ones(200, dtype=bool), strangers, 0.01, "test", use_margin=False)
    assert rule.min_margin == 0.0 and rule.false_accept <= 0.01


def test_fewer_than_100_strangers_claim_no_rate():
    rng = np.random.default_rng(2)
    with pytest.raises(NotEnoughStrangers, match=f"only 99 stranger faces.*{MIN_STRANGERS}"):
        calibrate(softmax_rows(rng, 10, 3, 2.0), np.ones(10, dtype=bool), softmax_rows(rng, 99, 3, 2.0), 0.01, "x", True)


def test_the_rule_round_trips_through_a_dict():
    rule = UnknownRule(0.8, 0.2, 0.01, 0.0075, 0.93, 400, "lfw_subset")
    assert UnknownRule.from_dict(rule.to_dict()) == rule
