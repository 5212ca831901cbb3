"""What `train` and `convert` share for both kinds of model: one-line errors, notes on stderr, and
where stranger faces come from."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgeface.dataset import (
    FaceSet,
    folder_images,
    images_in,
    load_faces,
    load_labelled_faces,
    stranger_faces,
    unvalidated_people,
)
from edgeface.preprocess import Preprocessing


class CommandError(Exception):
    """A problem with the command's inputs, reported in one line (exit code 2)."""


def note(text: str) -> None:
    """Progress and findings go to stderr; stdout carries the results."""
    print(text, file=sys.stderr, flush=True)


def warn_unvalidated(faces: FaceSet, validation: np.ndarray) -> None:
    """Says which people the validation split leaves out (one photo each), and when it is empty, that no
    figure below measures anything: a split of 0 faces looks like a perfect score."""
    people = unvalidated_people(faces, validation)
    if not people:
        return
    if len(validation) == 0:
        note("warning: every person has one photo, so nothing is held out to validate on: the figures below "
             "cover no face, and say nothing of how well the model names new photos; give each person 2 or more")
    else:
        shown = ", ".join(people[:5]) + (f" and {len(people) - 5} more" if len(people) > 5 else "")
        note(f"warning: {len(people)} people have one photo, so none of theirs is held out to validate on "
             f"({shown}): the figures below leave them out; give each person 2 or more")


def load_training_faces(data: str, spec: Preprocessing, keep_no_face: bool) -> FaceSet:
    """The largest face of each photo in DATA/<person>/, saying which photos gave none."""
    try:
        faces = load_labelled_faces(data, spec, keep_no_face=keep_no_face)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    for path in faces.no_face:
        note(f"no face found, {'used whole' if keep_no_face else 'not used'}: {path}")
    for path in faces.unreadable:
        note(f"not a readable image, not used: {path}")
    return faces


def load_unlabelled_faces(sources: tuple[str, ...], spec: Preprocessing) -> FaceSet:
    """The largest face of each photo in `sources` (folders, walked with their sub-folders, or photo files),
    without labels; says how many photos gave none. CommandError when there is no photo at all."""
    files: list[tuple[str, int]] = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise CommandError(f"{source}: no such file or folder")
        files += [(image, -1) for image in images_in(path, recursive=True)] if path.is_dir() else [(source, -1)]
    if not files:
        raise CommandError(f"no photos in {', '.join(sources)} (looked for image files in every sub-folder)")
    faces = load_faces(files, (), spec)
    if faces.no_face or faces.unreadable:
        note(f"{len(faces.no_face)} photos with no face found and {len(faces.unreadable)} not readable images "
             f"were left out, of {len(files)}")  # fmt: skip
    return faces


def hold_out_identities(faces: FaceSet, count: int, seed: int) -> tuple[FaceSet, list[str]]:
    """Removes `count` people, chosen by `seed`, to serve as strangers; relabels the rest."""
    if count <= 0:
        return faces, []
    if len(faces.labels) - count < 2:
        raise CommandError(f"--holdout-identities {count} leaves fewer than two people to train on")
    held = sorted(np.random.default_rng(seed).choice(len(faces.labels), size=count, replace=False).tolist())
    kept_labels = tuple(label for i, label in enumerate(faces.labels) if i not in held)
    keep = np.flatnonzero(~np.isin(faces.targets, held))
    remap = {faces.labels.index(label): new for new, label in enumerate(kept_labels)}
    targets = np.array([remap[t] for t in faces.targets[keep]], dtype=np.int64)
    kept = FaceSet(faces.crops[keep], targets, kept_labels, [faces.paths[i] for i in keep])
    return kept, [faces.labels[i] for i in held]


def stranger_spec(source: str | None, held_out_people: list[str], data: str) -> dict | None:
    """Where stranger faces come from, recorded so `convert` can calibrate on the same ones."""
    if held_out_people:
        return {"holdout": held_out_people, "data": str(Path(data).resolve())}
    if source:
        return {"source": source if source == "lfw_subset" else str(Path(source).resolve())}
    return None


def load_strangers(spec_of_strangers: dict | None, spec: Preprocessing) -> tuple[np.ndarray, str] | None:
    if spec_of_strangers is None:
        return None
    if "holdout" in spec_of_strangers:
        root = Path(spec_of_strangers["data"])
        files = [
            (str(path), -1)
            for person in spec_of_strangers["holdout"]
            for path, _ in folder_images(root / person, ())
        ]
        crops = load_faces(files, (), spec).crops
        return crops, f"{len(spec_of_strangers['holdout'])} people held out of training"
    try:
        return stranger_faces(spec_of_strangers["source"], spec)
    except ValueError as error:
        raise CommandError(str(error)) from None
