"""`edgeface verify`: are two faces the same person? Two photos (the largest face of each), or a
photo against a person enrolled in the log or in the model's gallery.

The answer uses the model's own unknown rule: the same distance that decides whether `scan` names
someone decides here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeface.enroll import EnrolmentRefused, FaceRejected, embedder_of, refuse_unlike_faces
from edgeface.geometry import Box
from edgeface.images import ImageError, decode, read_input
from edgeface.pipeline import Pipeline
from edgeface.preprocess import crop_faces


class UnknownPerson(ValueError):
    """--person names nobody the model and the log know."""


@dataclass(frozen=True)
class Verdict:
    """same: distance <= threshold. `b` is the second photo's path, or the person's name."""

    a: str
    b: str
    same: bool
    distance: float
    threshold: float

    def to_dict(self) -> dict:
        return {**asdict(self), "distance": round(self.distance, 4)}


def largest_face_embedding(pipeline: Pipeline, path: str) -> np.ndarray:
    """The embedding of the largest face in the photo at `path`; EnrolmentRefused names the photo
    when it cannot be read, shows no face, or the model's quality gate rejects its face."""
    try:
        pixels = decode(read_input(path).content)
    except ImageError as error:
        raise EnrolmentRefused(f"{path}: {error}") from None  # name the photo: there are two
    boxes: list[Box] = pipeline.detector.detect(pixels)
    if not boxes:
        raise EnrolmentRefused(f"{path}: no face found")
    largest = max(boxes, key=lambda box: box.area)
    try:
        refuse_unlike_faces(pipeline, pixels, largest)
    except FaceRejected as error:
        raise FaceRejected(f"{path}: {error}") from None
    return embedder_of(pipeline).embed(crop_faces(pixels, [largest], pipeline.preprocessing))[0]


def verify_photos(pipeline: Pipeline, a: str, b: str) -> Verdict:
    """Whether the largest faces of photos `a` and `b` are the same person."""
    threshold = embedder_of(pipeline).rule.max_distance
    distance = float(np.linalg.norm(largest_face_embedding(pipeline, a) - largest_face_embedding(pipeline, b)))
    return Verdict(a, b, distance <= threshold, distance, threshold)


def verify_person(pipeline: Pipeline, a: str, person: str) -> Verdict:
    """Whether the largest face of photo `a` is `person`, measured as `scan` measures it (to the
    person's centroid, or nearest photo, per the rule; the log's enrolments applied by the caller)."""
    embedder = embedder_of(pipeline)
    if person not in embedder.gallery.people:
        raise UnknownPerson(f"{person!r} is not enrolled for this model (see `edgeface people`)")
    only_them = embedder.gallery.without(set(embedder.gallery.people) - {person})
    _, distances = only_them.nearest(largest_face_embedding(pipeline, a)[np.newaxis], embedder.rule.method)
    distance = float(distances[0])
    threshold = embedder.rule.max_distance
    return Verdict(a, person, distance <= threshold, distance, threshold)
