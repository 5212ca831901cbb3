"""What recognition produces, in the forms every consumer shares: predictions, faces, images, appearances.

The bottom floor of the runtime: it imports only `geometry` and `paths`, so the log, the tracker, the views and
the sinks can hold results without loading OpenCV, LiteRT or the pipeline that makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edgeface.geometry import Box
from edgeface.paths import absolute


class Status(StrEnum):
    """How an input ended: with a result, or with a recorded error. The log stores the text."""

    DONE = "done"
    ERROR = "error"


@dataclass(frozen=True)
class Prediction:
    """The label given to one face, a 0..1 confidence, and whether the model's unknown rule
    rejects it (then `label` is only the nearest known person). `distance` is an embedder's
    distance to that person (None for a classifier)."""

    label: str
    confidence: float
    unknown: bool = False
    distance: float | None = None


def shown_label(label: str, unknown: bool) -> str:
    """The label a person reads: an unknown face shows the nearest known label after a tilde."""
    if not unknown:
        return label
    return f"unknown ~{label}" if label else "unknown"  # an empty gallery has no nearest


QUALITY = "quality"  # why a face was rejected before recognition: the face-quality gate (`edgeface.gate`)
REJECTIONS = (QUALITY,)


def rejected_text(score: float | None) -> str:
    """How a face the quality gate rejected reads: 'rejected (quality 0.031)', the gate's score."""
    return "rejected" if score is None else f"rejected (quality {score:.3f})"


@dataclass(frozen=True)
class FaceResult:
    """One face: where, the nearest known label, a 0..1 confidence, whether it is rejected as
    unknown, and an embedder's distance to that label (None for a classifier).

    rejected: why the face was not recognised at all (QUALITY: the gate scored it unlike a face); it then has no
        label (""), confidence 0 and is not `unknown`: it was never compared with anyone.
    quality: the gate's score (reconstruction error, 0..1, lower is more face-like) when the model has a gate.
    """

    box: Box
    label: str
    confidence: float
    unknown: bool = False
    distance: float | None = None
    rejected: str | None = None
    quality: float | None = None

    @classmethod
    def rejected_by_gate(cls, box: Box, score: float) -> FaceResult:
        """A face the quality gate turned away, with its score."""
        return cls(box, "", 0.0, rejected=QUALITY, quality=score)

    @property
    def shown(self) -> str:
        """The label as people read it (see `shown_label`); a rejected face's rejection."""
        return rejected_text(self.quality) if self.rejected else shown_label(self.label, self.unknown)

    @property
    def said(self) -> str:
        """The face in a few words: 'alice 0.93', 'unknown ~bob 0.41' or 'rejected (quality 0.031)'."""
        return self.shown if self.rejected else f"{self.shown} {self.confidence:.2f}"

    def to_dict(self) -> dict:
        return {
            "box": self.box.as_list(),
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "unknown": self.unknown,
            "distance": None if self.distance is None else round(self.distance, 4),
            "rejected": self.rejected,
            "quality": None if self.quality is None else round(self.quality, 6),
        }


@dataclass(frozen=True)
class ImageResult:
    """The outcome for one input: faces, or an error message (then `faces` is empty).

    sha256, size and the dimensions are None when the file could not be read or decoded.
    """

    path: str
    sha256: str | None
    size: int | None
    width: int | None
    height: int | None
    faces: tuple[FaceResult, ...]
    error: str | None = None

    @classmethod
    def unreadable(cls, path: str, error: str) -> ImageResult:
        """The outcome for a file that could not be read at all (its path made absolute, as the log keeps paths)."""
        return cls(absolute(path), None, None, None, None, (), error)

    @property
    def status(self) -> Status:
        return Status.ERROR if self.error else Status.DONE

    def faces_text(self) -> str:
        """The faces in one line of a journal: 'alice 0.93, unknown ~bob 0.41, rejected (quality 0.031)', or
        'no face'."""
        if not self.faces:
            return "no face"
        return ", ".join(face.said for face in self.faces)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "faces": [face.to_dict() for face in self.faces],
            "error": self.error,
        }


@dataclass(frozen=True)
class Appearance:
    """One person's time in view of a camera: what the log records instead of one row per frame.

    first_seen, last_seen: the tracker's times (monotonic seconds) of the first and last frame where the face was
    seen. frames: how many frames the face was seen in; unknown_frames: how many of those were unknown.
    label, unknown, confidence, box: the tracker's vote (see `edgeface.tracking`).
    votes: frames per label among the frames that voted, most first, to show how clear the vote was.
    rejected_frames: frames whose face the quality gate rejected; they never vote. When every frame was rejected,
        `rejected` is QUALITY, the label "" and `quality` the best (lowest) score seen, with that frame's box.
    """

    track_id: int
    first_seen: float
    last_seen: float
    frames: int
    label: str
    confidence: float
    unknown: bool
    box: Box
    votes: dict[str, int]
    unknown_frames: int
    rejected_frames: int = 0
    rejected: str | None = None
    quality: float | None = None

    @property
    def shown(self) -> str:
        """The voted label as people read it, or the rejection."""
        return rejected_text(self.quality) if self.rejected else shown_label(self.label, self.unknown)

    def to_dict(self) -> dict:
        """The appearance as plain JSON types."""
        return {
            "track_id": self.track_id,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "frames": self.frames,
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "unknown": self.unknown,
            "box": self.box.as_list(),
            "votes": dict(self.votes),
            "unknown_frames": self.unknown_frames,
            "rejected_frames": self.rejected_frames,
            "rejected": self.rejected,
            "quality": None if self.quality is None else round(self.quality, 6),
        }
