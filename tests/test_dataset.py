"""Labelled folders to face crops: stray files ignored, photos without a face reported or kept."""

from pathlib import Path

import cv2

from edgeface.dataset import load_labelled_faces
from edgeface.preprocess import Preprocessing
from helpers import astronaut


def make_folder(root: Path) -> None:
    """astronaut/: the astronaut's photo; suit/: the lower half of it, where there is no face."""
    for label, picture in (("astronaut", astronaut()), ("suit", astronaut()[250:])):
        (root / label).mkdir(parents=True)
        cv2.imwrite(str(root / label / "photo.png"), picture)
    (root / "astronaut" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("not a label")


def test_photos_without_a_face_are_reported_and_left_out(tmp_path: Path):
    make_folder(tmp_path)
    faces = load_labelled_faces(tmp_path, Preprocessing(width=32, height=32))
    assert faces.labels == ("astronaut", "suit")
    assert [Path(p).parent.name for p in faces.paths] == ["astronaut"]
    assert faces.no_face == [str(tmp_path / "suit" / "photo.png")]
    assert faces.crops.shape == (1, 32, 32, 3)


def test_photos_without_a_face_can_be_used_whole(tmp_path: Path):
    make_folder(tmp_path)
    faces = load_labelled_faces(tmp_path, Preprocessing(width=32, height=32), keep_no_face=True)
    assert faces.targets.tolist() == [0, 1]
    assert faces.no_face == [str(tmp_path / "suit" / "photo.png")]
