"""`edgeface enroll`: a person's face embeddings from photos or a camera, for an embedder's gallery.

Runs on the device with the int8 model, without TensorFlow and without retraining. Each photo
gives its largest face; a photo with a second face nearly as large is refused, since the
largest may not be the person meant. A camera gives the faces of the one person in view,
aligned like every other crop, leaving out near-identical frames; when two people are in view,
or the faces seen are too far apart to be one person, nothing is enrolled.

A model with a face-quality gate (`edgeface.gate`) enrols only faces the gate passes: a photo whose face it rejects
is not used (and said so, with the score), a camera frame is skipped, and when the gate rejected every face there
was, enrolment is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgeface.camera import CameraFailed, CameraSource, SourceFinished
from edgeface.embedder import FaceEmbedder
from edgeface.geometry import Box
from edgeface.images import ImageError, decode, read_input
from edgeface.pipeline import Pipeline
from edgeface.preprocess import crop_faces
from edgeface.results import rejected_text

SECOND_FACE_SHARE = 0.5  # a second face at least this share of the largest's area makes a photo ambiguous
CAMERA_FPS = 5.0  # frames looked at per second while enrolling from a camera
SAME_FRAME_DISTANCE = 0.15  # a face nearer than this to one already kept adds nothing
MAX_CAMERA_FACES = 20


class EnrolmentRefused(ValueError):
    """Nothing can be enrolled (or compared) from what was given; the message says why."""


class FaceRejected(EnrolmentRefused):
    """The model's quality gate rejected the face: too unlike a face to enrol or compare."""


class NotAnEmbedder(ValueError):
    """The model is a classifier: it cannot take new people or compare faces."""


@dataclass
class Collected:
    """Embeddings of one person, with the photo hash of each (None for camera frames), the
    inputs that gave none, with the reason, and how many faces the quality gate rejected."""

    embeddings: list[np.ndarray] = field(default_factory=list)
    photos: list[str | None] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    rejected: int = 0


def embedder_of(pipeline: Pipeline) -> FaceEmbedder:
    """The pipeline's model if it is an embedder; NotAnEmbedder otherwise."""
    if not isinstance(pipeline.recognizer, FaceEmbedder):
        raise NotAnEmbedder(
            f"{pipeline.recognizer.path} is a classifier: it knows only the people it was trained on. "
            "Enrolling and comparing faces need an embedder model (`edgeface train DIR -o M.h5`, the default kind)"
        )
    return pipeline.recognizer


def one_face(pipeline: Pipeline, pixels: np.ndarray) -> np.ndarray:
    """The embedding of the largest face in `pixels`; EnrolmentRefused when there is none, or a
    second face nearly as large."""
    boxes = sorted(pipeline.detector.detect(pixels), key=lambda box: -box.area)
    if not boxes:
        raise EnrolmentRefused("no face found")
    if len(boxes) > 1 and boxes[1].area >= SECOND_FACE_SHARE * boxes[0].area:
        raise EnrolmentRefused(f"{len(boxes)} faces of similar size: use a photo of this person alone")
    refuse_unlike_faces(pipeline, pixels, boxes[0])
    return embed_boxes(pipeline, pixels, boxes[:1])[0]


def refuse_unlike_faces(pipeline: Pipeline, pixels: np.ndarray, box: Box) -> None:
    """FaceRejected when the model's quality gate rejects the face in `box` of BGR `pixels`; a model without a
    gate accepts every face."""
    gate = pipeline.recognizer.gate
    if gate is None:
        return
    scores = gate.scores(crop_faces(pixels, [box], gate.preprocessing))
    if not gate.passes(scores)[0]:
        raise FaceRejected(f"{rejected_text(float(scores[0]))}: the model's quality gate takes it for something other "
                           f"than a face (its threshold: {gate.threshold:.3f})")  # fmt: skip


def embed_boxes(pipeline: Pipeline, pixels: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Embeddings (n × d) of the given faces, cropped as the model says."""
    return embedder_of(pipeline).embed(crop_faces(pixels, boxes, pipeline.preprocessing))


def from_photos(pipeline: Pipeline, paths: list[str]) -> Collected:
    """One embedding per photo that shows the person; the others are listed in `problems`."""
    embedder_of(pipeline)
    collected = Collected()
    for path in paths:
        try:
            input_file = read_input(path)
            embedding = one_face(pipeline, decode(input_file.content))
        except (ImageError, EnrolmentRefused, cv2.error) as error:
            collected.problems.append((path, str(error)))
            collected.rejected += isinstance(error, FaceRejected)
            continue
        collected.embeddings.append(embedding)
        collected.photos.append(input_file.sha256)
    if collected.rejected and not collected.embeddings:
        raise FaceRejected(f"the quality gate rejected the face of {collected.rejected} of {len(paths)} photos, and "
                           "no other photo gave one: nothing to enrol (use clear, frontal photos of the face)")  # fmt: skip
    return collected


def from_camera(pipeline: Pipeline, source: str, seconds: float, max_distance: float) -> Collected:
    """Distinct faces of the one person in view of `source` over `seconds` (a video file: until
    it ends, if sooner). EnrolmentRefused when two people were in view at once, or one after
    the other (faces in groups farther apart than `max_distance`), or when none was seen."""
    embedder_of(pipeline)
    kept: list[np.ndarray] = []
    crowded = frames = rejected = 0
    deadline = time.monotonic() + seconds
    try:
        with CameraSource(source, fps=CAMERA_FPS) as camera:
            while time.monotonic() < deadline and len(kept) < MAX_CAMERA_FACES:
                try:
                    frame = camera.next_frame(min(1.0, max(0.0, deadline - time.monotonic())))
                except SourceFinished:
                    break
                if frame is None:
                    continue
                frames += 1
                boxes = pipeline.detector.detect(frame.pixels)
                if len(boxes) > 1:
                    crowded += 1
                elif boxes:
                    try:
                        refuse_unlike_faces(pipeline, frame.pixels, boxes[0])
                    except FaceRejected:
                        rejected += 1
                        continue
                    embedding = embed_boxes(pipeline, frame.pixels, boxes)[0]
                    if all(np.linalg.norm(embedding - other) >= SAME_FRAME_DISTANCE for other in kept):
                        kept.append(embedding)
    except (CameraFailed, ValueError) as error:
        raise EnrolmentRefused(f"camera {source}: {error}") from None
    if crowded:
        raise EnrolmentRefused(f"more than one face in view in {crowded} of {frames} frames: enrol one person at a time")
    if not kept and rejected:
        raise FaceRejected(f"the quality gate rejected the face in all {rejected} frames of {source} that showed one")
    if not kept:
        raise EnrolmentRefused(f"no face seen in {frames} frames of {source}")
    groups = len(set(_groups(np.array(kept), max_distance)))
    if groups > 1:
        raise EnrolmentRefused(
            f"the faces seen fall into {groups} groups farther apart than the model's threshold "
            f"({max_distance:.2f}): more than one person came into view; enrol one person at a time"
        )
    return Collected(kept, [None] * len(kept), rejected=rejected)


def _groups(embeddings: np.ndarray, max_distance: float) -> list[int]:
    """A group number per embedding: two faces within `max_distance` of each other are in one group,
    and so are chains of them (a person turning their head passes through the faces in between)."""
    group = list(range(len(embeddings)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=2)
    for i, j in zip(*np.nonzero(distances <= max_distance)):
        group[root(i)] = root(j)
    return [root(i) for i in range(len(embeddings))]
