"""Open-set recognition: saying "unknown" instead of naming a stranger.

A softmax always names someone it knows. The rule here accepts the top label only when its
probability (confidence) and, for softmax models, its lead over the runner-up (margin) clear two
thresholds. The thresholds are calibrated on faces of people the model never saw (strangers) so
that at most a target fraction of them is accepted: the false-accept rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MIN_STRANGERS = 100  # below this a measured false-accept rate of about 1 % means little


class NotEnoughStrangers(ValueError):
    """Too few stranger faces to claim a false-accept rate."""


@dataclass(frozen=True)
class UnknownRule:
    """Accept the top label when confidence >= min_confidence and margin >= min_margin.

    target_false_accept: the rate asked for; false_accept: the rate measured on `strangers` faces
    from `stranger_source`; known_accept: the fraction of known validation faces accepted.
    """

    min_confidence: float
    min_margin: float
    target_false_accept: float
    false_accept: float
    known_accept: float
    strangers: int
    stranger_source: str

    def unknown(self, probabilities: np.ndarray) -> np.ndarray:
        """bool (n,): which rows of (n, n_labels) probabilities the rule rejects."""
        confidence, margin = confidence_and_margin(probabilities)
        return (confidence < self.min_confidence) | (margin < self.min_margin)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for people: the thresholds and what they were measured on."""
        return (
            f"confidence >= {self.min_confidence:.4f}, margin >= {self.min_margin:.4f}; "
            f"{100 * self.false_accept:.1f} % of {self.strangers} strangers accepted ({self.stranger_source})"
        )

    @classmethod
    def from_dict(cls, data: dict) -> UnknownRule:
        return cls(
            min_confidence=float(data["min_confidence"]),
            min_margin=float(data["min_margin"]),
            target_false_accept=float(data["target_false_accept"]),
            false_accept=float(data["false_accept"]),
            known_accept=float(data["known_accept"]),
            strangers=int(data["strangers"]),
            stranger_source=str(data["stranger_source"]),
        )


def confidence_and_margin(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 probability and top-1 minus top-2, per row of (n, n_labels) probabilities."""
    ranked = np.sort(probabilities, axis=1)
    return ranked[:, -1], ranked[:, -1] - ranked[:, -2]


def calibrate(
    known: np.ndarray,
    known_correct: np.ndarray,
    strangers: np.ndarray,
    target_false_accept: float,
    stranger_source: str,
    use_margin: bool,
) -> UnknownRule:
    """The thresholds that accept the most correctly named known faces while accepting at most
    `target_false_accept` of the strangers.

    Args:
        known: (n, n_labels) probabilities for faces of known people (the validation split).
        known_correct: bool (n,), whether the top label of each known face is right.
        strangers: (m, n_labels) probabilities for faces of people the model never saw.
        use_margin: also threshold the top-1 minus top-2 margin (softmax models).
    """
    if len(strangers) < MIN_STRANGERS:
        raise NotEnoughStrangers(
            f"only {len(strangers)} stranger faces; at least {MIN_STRANGERS} are needed to claim a false-accept rate"
        )
    known_confidence, known_margin = confidence_and_margin(known)
    stranger_confidence, stranger_margin = confidence_and_margin(strangers)
    allowed = int(np.floor(target_false_accept * len(strangers)))
    margins = np.unique(np.concatenate([[0.0], stranger_margin])) if use_margin else np.array([0.0])
    best: tuple[int, float, float] | None = None
    for min_margin in margins:
        passing = np.sort(stranger_confidence[stranger_margin >= min_margin])[::-1]
        # Just above the (allowed + 1)-th most confident stranger: at most `allowed` get through.
        min_confidence = float(np.nextafter(passing[allowed], np.inf)) if len(passing) > allowed else 0.0
        accepted = (known_confidence >= min_confidence) & (known_margin >= min_margin)
        score = int((accepted & known_correct).sum())
        if best is None or score > best[0]:
            best = (score, min_confidence, float(min_margin))
    _, min_confidence, min_margin = best
    stranger_accepted = (stranger_confidence >= min_confidence) & (stranger_margin >= min_margin)
    known_accepted = (known_confidence >= min_confidence) & (known_margin >= min_margin)
    return UnknownRule(
        min_confidence=min_confidence,
        min_margin=min_margin,
        target_false_accept=target_false_accept,
        false_accept=float(stranger_accepted.mean()),
        known_accept=float(known_accepted.mean()) if len(known) else 0.0,
        strangers=len(strangers),
        stranger_source=stranger_source,
    )
