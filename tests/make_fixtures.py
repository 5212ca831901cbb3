"""Makes the committed files in tests/fixtures/, which the device tier uses instead of training anything.

    python tests/make_fixtures.py [NAME ...]     # default: all of them

Run it on a workstation where `pip install -e '.[test]'` was run (TensorFlow, scikit-image, Pillow), then commit
what changed. `keras2.h5` also needs `pip install tf-keras` (Keras 2, which the test extra leaves out: it would
pull the full `tensorflow` next to `tensorflow-cpu`). The workstation tier makes the two models again with the
same recipes and checks that the committed ones still match them (tests/test_fixtures.py), so they cannot go
stale silently.

Every picture comes from scikit-image's bundled data: lfw_subset (25×25 LFW face crops and non-face patches) and
astronaut (NASA, public domain).

- held_out/{face,not-face}/NNN.png: 20 lfw_subset patches of each label that the classifier never saw; NNN is the
  patch's index among its label's 100 (held_out/face/010.png is lfw_subset's face 10).
- face_or_not.tflite: the classic CNN that `edgeface train --arch classic` trains on the other 160 patches (32×32
  grey, detector none), converted to int8 by `edgeface convert`.
- embedder.tflite: an embedder made by `edgeface train` and `edgeface convert` with a small stand-in in place of
  dlib's 22 MB network (see `stand_in_network`). Its gallery: lfw_subset's faces 0-3, five photos each; its rule
  is calibrated on faces 40-99 as strangers.
- embedder-gated.tflite: the same embedder converted with `--gate`: a face-quality gate that `edgeface train-gate`
  (detector none, like the embedder) learned from the embedder's training and stranger photos.
- astronaut.jpg: scikit-image's astronaut, a real photo with one face.
- cmyk.jpg, bigtiff.tif: picture formats OpenCV cannot write (Pillow can).
- keras2.h5: a small Keras 2 model, a model file made elsewhere for `convert`.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from helpers import FIXTURES, run_in_process, write_photos

if TYPE_CHECKING:
    import keras  # imported where a model is made: the tests import this module without TensorFlow

HELD_OUT_PER_LABEL = 20
LABELS = ("face", "not-face")
PEOPLE, PHOTOS = 4, 5  # the embedder's gallery: lfw_subset faces 0..3
STRANGERS = range(40, 100)  # the faces its rule is calibrated on, two photos each
EMBEDDING_SIZE = 128
TYPICAL_NORM = 0.8  # the stand-in's embeddings are scaled to about this length, as dlib's are


def lfw_subset() -> np.ndarray:
    """scikit-image's lfw_subset as uint8 (200, 25, 25): 100 faces, then 100 non-faces."""
    from skimage import data

    return np.round(data.lfw_subset() * 255).astype(np.uint8)


@dataclass(frozen=True)
class MadeModel:
    """A model made by a recipe here: the Keras file, the int8 .tflite and what `convert --json` reported."""

    keras_file: Path
    tflite_file: Path
    convert_report: dict


def checked(run: subprocess.CompletedProcess) -> str:
    """The stdout of a finished edgeface command (`run_in_process`); raises with its stderr if it failed."""
    if run.returncode != 0:
        raise RuntimeError(f"edgeface {run.args[1]} ended with {run.returncode}:\n{run.stderr}")
    return run.stdout


def convert(keras_file: Path) -> MadeModel:
    """`edgeface convert KERAS_FILE --json`, in this process: the int8 .tflite beside it."""
    report = json.loads(checked(run_in_process("convert", str(keras_file), "--json")))
    return MadeModel(keras_file, keras_file.with_suffix(".tflite"), report)


def write_held_out(folder: Path, patches: np.ndarray) -> Path:
    """The held-out patches as folder/held_out/<label>/NNN.png, the rest as folder/faces/<label>/NNN.png, the
    layout a user would make; returns folder/faces."""
    for label, of_label in zip(LABELS, (patches[:100], patches[100:])):
        for number, patch in enumerate(of_label):
            part = "held_out" if number < HELD_OUT_PER_LABEL else "faces"
            (folder / part / label).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / part / label / f"{number:03d}.png"), patch)
    return folder / "faces"


def held_out(folder: Path) -> list[tuple[Path, str]]:
    """(path, label) of each held-out patch in folder/<label>/, faces first."""
    return [(path, label) for label in LABELS for path in sorted((folder / label).glob("*.png"))]


def make_classifier(folder: Path, patches: np.ndarray) -> MadeModel:
    """face / not-face: `edgeface train --arch classic` on 160 patches, then `edgeface convert`, both in this
    process; the 40 held-out patches are in folder/held_out/."""
    faces = write_held_out(folder, patches)
    keras_file = folder / "face_or_not.h5"
    trained = checked(run_in_process(
        "train", str(faces), "-o", str(keras_file), "--arch", "classic", "--detector", "none", "--grayscale",
        "--input-size", "32", "--epochs", "20", "--batch-size", "16", "--seed", "3",
    ))  # fmt: skip
    assert "confusion matrix" in trained
    return convert(keras_file)


def stand_in_network(photos: np.ndarray) -> keras.Model:
    """A small embedder network for the tests: 150×150 RGB (0..255) → 6×6 average pooling, back to the 25×25 of an
    lfw_subset patch → one fixed random projection to 128 values, whose weights sum to zero over the pixels, so
    that brightness moves nothing. Photos of one face land close together and different faces far apart, which is
    all the runtime's tests need; scaled so that `photos`' embeddings are about TYPICAL_NORM long."""
    import keras

    side = 150 // 6
    projection = np.random.default_rng(0).normal(size=(side * side, EMBEDDING_SIZE))
    projection -= projection.mean(axis=0)
    kernel = np.repeat(projection.reshape(side, side, 1, EMBEDDING_SIZE) / 3, 3, axis=2).astype(np.float32)
    inputs = keras.Input((150, 150, 3))
    pooled = keras.layers.AveragePooling2D(6)(inputs)
    projected = keras.layers.Conv2D(EMBEDDING_SIZE, side, use_bias=False)(pooled)
    model = keras.Model(inputs, keras.layers.Flatten()(projected))
    model.layers[2].set_weights([kernel])
    norm = np.median(np.linalg.norm(model.predict(photos, verbose=0), axis=1))
    model.layers[2].set_weights([kernel * (TYPICAL_NORM / norm)])
    return model


@contextmanager
def network_of_embedder_train(make: Callable[[], keras.Model]) -> Iterator[None]:
    """`edgeface train`'s embedder, in this process, with the network `make` gives instead of dlib's."""
    from edgeface_convert import embedder_train

    original = embedder_train.load_dlib_embedder
    embedder_train.load_dlib_embedder = make
    try:
        yield
    finally:
        embedder_train.load_dlib_embedder = original


def make_embedder(folder: Path, patches: np.ndarray) -> MadeModel:
    """`edgeface train` (the embedder, detector none, with strangers) with the stand-in network, in this process,
    then `edgeface convert`."""
    rng = np.random.default_rng(5)
    people = [write_photos(folder / "faces" / f"person{n}", patches[n], PHOTOS, rng) for n in range(PEOPLE)]
    for stranger in STRANGERS:
        write_photos(folder / "strangers", patches[stranger], 2, rng, prefix=f"s{stranger}-")
    photos = np.array([cv2.imread(str(path))[..., ::-1] for paths in people for path in paths], np.float32)
    keras_file = folder / "embedder.h5"
    args = ["train", str(folder / "faces"), "-o", str(keras_file), "--detector", "none",
            "--strangers", str(folder / "strangers")]  # fmt: skip
    with network_of_embedder_train(lambda: stand_in_network(photos)):
        checked(run_in_process(*args))
    return convert(keras_file)


def make_gated_embedder(folder: Path, patches: np.ndarray) -> MadeModel:
    """`make_embedder`, then `edgeface train-gate` on its photos (faces and strangers) and `edgeface convert --gate`,
    in this process, to folder/embedder-gated.tflite."""
    made = make_embedder(folder, patches)
    gate_file, output = folder / "gate.h5", folder / "embedder-gated.tflite"
    checked(run_in_process("train-gate", str(folder / "faces"), str(folder / "strangers"), "-o", str(gate_file),
                           "--detector", "none", "--epochs", "100"))  # fmt: skip
    report = checked(run_in_process("convert", str(made.keras_file), "--gate", str(gate_file), "-o", str(output), "--json"))
    return MadeModel(made.keras_file, output, json.loads(report))


def write_astronaut(target: Path) -> None:
    from skimage import data

    cv2.imwrite(str(target), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def colour_card() -> np.ndarray:
    """50×40 BGR: a red top third, a green middle third, a blue bottom third (rows 0-15, 17-32, 34-49)."""
    card = np.zeros((50, 40, 3), np.uint8)
    card[:16], card[17:33], card[34:] = (0, 0, 255), (0, 255, 0), (255, 0, 0)
    return card


def write_cmyk(target: Path) -> None:
    from PIL import Image

    Image.fromarray(colour_card()[..., ::-1]).convert("CMYK").save(target, "JPEG", quality=95)


def write_bigtiff(target: Path) -> None:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (9, 12, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF", big_tiff=True)
    target.write_bytes(buffer.getvalue())


def write_keras2(target: Path) -> None:
    """Conv2D(4) on 32×32 grey, then a softmax over 4 people: saved by Keras 2 (tf-keras) in its HDF5 format."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.InputLayer((32, 32, 1)),
        tf_keras.layers.Conv2D(4, 3, activation="relu"),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(4, activation="softmax"),
    ])  # fmt: skip
    model.save(target)


def install_models(work: Path, patches: np.ndarray, names: set[str]) -> None:
    """Makes the models named in `names` in `work` and copies them, and the held-out patches, to FIXTURES."""
    if "face_or_not.tflite" in names:
        made = make_classifier(work / "classifier", patches)
        shutil.rmtree(FIXTURES / "held_out", ignore_errors=True)
        shutil.copytree(work / "classifier" / "held_out", FIXTURES / "held_out")
        shutil.copy(made.tflite_file, FIXTURES / "face_or_not.tflite")
    if "embedder.tflite" in names:
        shutil.copy(make_embedder(work / "embedder", patches).tflite_file, FIXTURES / "embedder.tflite")
    if "embedder-gated.tflite" in names:
        made = make_gated_embedder(work / "embedder-gated", patches)
        shutil.copy(made.tflite_file, FIXTURES / "embedder-gated.tflite")


PICTURES: dict[str, Callable[[Path], None]] = {
    "astronaut.jpg": write_astronaut, "cmyk.jpg": write_cmyk, "bigtiff.tif": write_bigtiff, "keras2.h5": write_keras2,
}  # fmt: skip
NAMES = ("face_or_not.tflite", "embedder.tflite", "embedder-gated.tflite", *PICTURES)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"what to make (default: all): {', '.join(NAMES)}")
    names = set(parser.parse_args(argv).names) or set(NAMES)
    if names - set(NAMES):
        parser.error(f"no fixture named {', '.join(sorted(names - set(NAMES)))}")
    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        install_models(Path(work), lfw_subset(), names)
    for name, write in PICTURES.items():
        if name in names:
            write(FIXTURES / name)
    for path in sorted(FIXTURES.rglob("*.*")):
        if path.parent == FIXTURES:
            print(f"{path.stat().st_size:>9,} B  {path.relative_to(FIXTURES.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
