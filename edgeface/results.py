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


@dataclass(frozen=True)
class FaceResult:
    """One face: where, the nearest known label, a 0..1 confidence, whether it is rejected as
    unknown, and an embedder's distance to that label (None for a classifier)."""

    box: Box
    label: str
    confidence: float
    unknown: bool = False
    distance: float | None = None

    @property
    def shown(self) -> str:
        """The label as people read it (see `shown_label`)."""
        return shown_label(self.label, self.unknown)

    def to_dict(self) -> dict:
        return {
            "box": self.box.as_list(),
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "unknown": self.unknown,
            "distance": None if self.distance is None else round(self.distance, 4),
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
        """The faces in one line of a journal: 'alice 0.93, unknown ~bob 0.41', or 'no face'."""
        if not self.faces:
            return "no face"
        return ", ".join(f"{face.shown} {face.confidence:.2f}" for face in self.faces)

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
        }
