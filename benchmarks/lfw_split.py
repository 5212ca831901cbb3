"""lfw_dev split once into known people (gallery and test photos) and strangers, and how well embeddings of those
photos name the known and refuse the strangers; `face_recognition`'s embeddings of the same photos. No TensorFlow:
accuracy.py (with the Keras embedder) and report.py (with int8 models only) both use it.

The split is made over the photo files, before any detector runs, so every method (the embedder,
face_recognition, the classic CNN) sees the same gallery, test and stranger photos; each leaves
out the photos its own detector finds no face in, and says how many.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeface.dataset import FaceSet, labelled_images, stratified_split
from edgeface.embedder import FaceEmbedder
from edgeface.gallery import Gallery, calibrate_distance
from edgeface.openset import calibrate

STRANGER_SHARE = 3  # one person in three is held out as a stranger
TEST_FRACTION = 0.3  # of each known person's photos
FAR = 0.01  # the false-accept rate the distance threshold is calibrated to
METHODS = ("image", "centroid")
STRANGER_SOURCE = "held-out lfw_dev people"
BATCH = 64  # crops per LiteRT call when embedding many faces
HEAD_STEPS, HEAD_RATE, HEAD_L2 = 1000, 2.0, 1e-4  # the softmax head's training (converges well before)


@dataclass(frozen=True)
class PeopleSplit:
    """lfw_dev's photos by role. `files`: (path, person) for every photo; `roles`: path → "gallery",
    "test" or "stranger"; `strangers`: the held-out people (sorted); `known`: everyone else (sorted)."""

    files: tuple[tuple[str, str], ...]
    roles: dict[str, str]
    known: tuple[str, ...]
    strangers: tuple[str, ...]

    def count(self, role: str) -> int:
        return sum(1 for found in self.roles.values() if found == role)

    def describe(self) -> dict:
        return {
            "known_people": len(self.known),
            "stranger_people": len(self.strangers),
            "gallery_photos": self.count("gallery"),
            "test_photos": self.count("test"),
            "stranger_photos": self.count("stranger"),
            "strangers": list(self.strangers),
        }

    def of_people(self, known: int, strangers: int) -> PeopleSplit:
        """The same split kept to its first `known` known people and first `strangers` strangers: a quick run's
        photos, each with the role it has in the whole split."""
        people = set(self.known[:known]) | set(self.strangers[:strangers])
        files = tuple((path, person) for path, person in self.files if person in people)
        return PeopleSplit(files, {path: self.roles[path] for path, _ in files}, self.known[:known],
                           self.strangers[:strangers])  # fmt: skip



def people_split(root: Path, seed: int) -> PeopleSplit:
    """A third of the people (chosen with `seed`) held out; the others' photos split per person
    into gallery and test with `stratified_split`."""
    labels, files = labelled_images(root)
    held = set(np.random.default_rng(seed).choice(len(labels), size=round(len(labels) / STRANGER_SHARE), replace=False))
    known = [(path, target) for path, target in files if target not in held]
    gallery, test = stratified_split(np.array([target for _, target in known], dtype=np.int64), TEST_FRACTION, seed)
    roles = {path: "stranger" for path, target in files if target in held}
    roles.update({known[i][0]: "gallery" for i in gallery})
    roles.update({known[i][0]: "test" for i in test})
    return PeopleSplit(
        files=tuple((path, labels[target]) for path, target in files),
        roles=roles,
        known=tuple(labels[i] for i in range(len(labels)) if i not in held),
        strangers=tuple(labels[i] for i in sorted(held)),
    )



def roles_of(split: PeopleSplit, paths: list[str]) -> np.ndarray:
    return np.array([split.roles[path] for path in paths], dtype=object)



def recognition_figures(split: PeopleSplit, paths: list[str], embeddings: np.ndarray) -> dict:
    """Naming the test faces by the nearest gallery image and centroid, and the threshold at which
    at most FAR of the stranger faces come that close.

    known_accept: known test faces within the threshold and given the right name; wrong_accept:
    within it but misnamed. unseen_false_accept: the rate on one half of the stranger people when
    the threshold is calibrated on the other half (both ways, pooled): the in-sample 1 % checked.
    """
    roles = roles_of(split, paths)
    person_of = dict(split.files)
    people = np.array([person_of[path] for path in paths], dtype=object)
    gallery = Gallery(tuple(people[roles == "gallery"]), embeddings[roles == "gallery"].astype(np.float32))
    test, truth = embeddings[roles == "test"], people[roles == "test"]
    strangers, stranger_people = embeddings[roles == "stranger"], people[roles == "stranger"]
    result = {
        "gallery_faces": int((roles == "gallery").sum()),
        "test_faces": len(test),
        "stranger_faces": len(strangers),
    }
    for method in METHODS:
        names, distances = gallery.nearest(test, method)
        correct = np.array(names, dtype=object) == truth
        stranger_distances = gallery.nearest(strangers, method)[1]
        rule = calibrate_distance(
            distances, correct, stranger_distances, FAR, STRANGER_SOURCE, len(gallery.people), method
        )
        result[method] = {
            "top1": float(correct.mean()),
            "max_distance": rule.max_distance,
            "false_accept": rule.false_accept,
            "known_accept": rule.known_accept,
            "wrong_accept": float(((distances <= rule.max_distance) & ~correct).mean()),
            "unseen_false_accept": unseen_false_accept(split, stranger_people, stranger_distances, distances, correct),
        }
    result["softmax_head"] = softmax_head(gallery, test, truth, strangers)
    return result



def softmax_head(gallery: Gallery, test: np.ndarray, truth: np.ndarray, strangers: np.ndarray) -> dict:
    """What a softmax head trained on the gallery's embeddings would give instead of distances:
    top-1 on the test faces, and the known faces accepted with the right name by the classic CNN's
    unknown rule (confidence and margin) calibrated on the strangers at FAR."""
    people = gallery.people
    targets = np.array([people.index(name) for name in gallery.names])
    scale = gallery.vectors.std()
    weights, bias = np.zeros((gallery.dimensions, len(people))), np.zeros(len(people))
    one_hot = np.eye(len(people))[targets]
    for _ in range(HEAD_STEPS):  # full-batch gradient descent on cross-entropy with a little L2
        gradient = (_softmax(gallery.vectors / scale @ weights + bias) - one_hot) / len(targets)
        weights -= HEAD_RATE * (gallery.vectors.T / scale @ gradient + HEAD_L2 * weights)
        bias -= HEAD_RATE * gradient.sum(axis=0)
    known, unknown = _softmax(test / scale @ weights + bias), _softmax(strangers / scale @ weights + bias)
    correct = np.array(people, dtype=object)[known.argmax(axis=1)] == truth
    rule = calibrate(known, correct, unknown, FAR, STRANGER_SOURCE, use_margin=True)
    return {
        "top1": float(correct.mean()),
        "known_accept": float((~rule.unknown(known) & correct).mean()),
        "false_accept": rule.false_accept,
    }



def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)



def unseen_false_accept(
    split: PeopleSplit, people: np.ndarray, distances: np.ndarray, known: np.ndarray, correct: np.ndarray
) -> float:
    """False accepts on stranger people the threshold was not calibrated on (two halves, pooled)."""
    half = np.isin(people, split.strangers[: len(split.strangers) // 2])
    accepted = 0
    for calibrate_on in (half, ~half):
        rule = calibrate_distance(known, correct, distances[calibrate_on], FAR, STRANGER_SOURCE, len(split.known))
        accepted += int((distances[~calibrate_on] <= rule.max_distance).sum())
    return accepted / len(distances)



def embed_all(embedder: FaceEmbedder, crops: np.ndarray) -> np.ndarray:
    """Embeddings of many crops, BATCH at a time (one call for all would need gigabytes)."""
    return np.concatenate([embedder.embed(crops[i : i + BATCH]) for i in range(0, len(crops), BATCH)])



def face_recognition_available() -> bool:
    return importlib.util.find_spec("face_recognition") is not None



def face_recognition_results(split: PeopleSplit, say: Callable[[str], None]) -> dict:
    """The `face_recognition` package on the same photos: dlib's HOG detector (one upsampling, its
    default), the largest face, `face_encodings` with its 5-point landmarks and num_jitters=1."""
    import face_recognition
    import face_recognition_models

    paths, embeddings, no_face, encode_ms = [], [], [], []
    started, detecting = time.monotonic(), 0.0
    for path, _ in split.files:
        begin = time.perf_counter()
        image = face_recognition.load_image_file(path)
        boxes = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
        detecting += time.perf_counter() - begin
        if not boxes:
            no_face.append(path)
            continue
        largest = max(boxes, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))  # (top, right, bottom, left)
        begin = time.perf_counter()
        (encoding,) = face_recognition.face_encodings(image, [largest], num_jitters=1, model="small")
        encode_ms.append(1000 * (time.perf_counter() - begin))
        paths.append(path)
        embeddings.append(encoding)
    seconds = time.monotonic() - started
    say(f"face_recognition: HOG found a face in {len(paths)} photos, none in {len(no_face)}, in {seconds:.0f} s")
    return {
        "detector": "dlib HOG",
        "photos_with_face": len(paths),
        "photos_without_face": len(no_face),
        "test_photos_without_face": sum(split.roles[path] == "test" for path in no_face),
        "read_detect_ms_per_photo": 1000 * detecting / len(split.files),
        "read_detect_encode_ms_per_photo": 1000 * seconds / len(split.files),
        "encode_ms_per_face_median": float(np.median(encode_ms)),
        "resnet_dat_bytes": Path(face_recognition_models.face_recognition_model_location()).stat().st_size,
        "landmarks_dat_bytes": Path(face_recognition_models.pose_predictor_five_point_model_location()).stat().st_size,
        "figures": recognition_figures(split, paths, np.asarray(embeddings, dtype=np.float32)),
    }



def known_faces(faces: FaceSet, split: PeopleSplit, role: str) -> FaceSet:
    """The faces of `role` ("gallery" or "test") with targets renumbered over the known people."""
    index = {person: i for i, person in enumerate(split.known)}
    chosen = np.flatnonzero(roles_of(split, faces.paths) == role)
    targets = np.array([index[faces.labels[faces.targets[i]]] for i in chosen], dtype=np.int64)
    return FaceSet(faces.crops[chosen], targets, split.known, [faces.paths[i] for i in chosen])



def stranger_crops(faces: FaceSet, split: PeopleSplit, people: tuple[str, ...]) -> np.ndarray:
    """Crops of the stranger faces of `people`."""
    of_people = np.isin(np.array([faces.labels[t] for t in faces.targets], dtype=object), people)
    return faces.crops[(roles_of(split, faces.paths) == "stranger") & of_people]
