"""What report.py measures on, made once into a cache folder: flat folders of photos and clip frames (the same files
for edgeface and `face_recognition`), and, unless given, an int8 classic CNN and an int8 embedder built with the
workstation's `edgeface train` and `convert` (in child processes, so that the report itself never imports TensorFlow).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from lfw_split import PeopleSplit

CLASSIC_EPOCHS = 5  # the classic model is a speed stand-in: its size and cost do not depend on how well it learnt
JPEG_QUALITY = 95  # the clip's frames, written as a camera's snapshots would be


def copy_flat(paths: list[str], folder: Path) -> Path:
    """`paths` copied into one flat `folder` (face_recognition's CLI reads no sub-folders); lfw_dev's file names
    already carry the person, so none collide. Made once: an existing folder is reused as it is."""
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for path in paths:
            shutil.copyfile(path, partial / Path(path).name)
        partial.rename(folder)
    return folder


def clip_frames(clip: Path, count: int, folder: Path) -> Path:
    """`count` frames spread evenly over `clip`, as JPEG files in `folder` (made once)."""
    if folder.is_dir():
        return folder
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        found, pixels = capture.read()
        if not found:
            break
        frames.append(pixels)
    capture.release()
    if len(frames) < count:
        raise SystemExit(f"{clip} has {len(frames)} frames, fewer than the {count} asked for")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for n in range(count):
        index = n * len(frames) // count
        cv2.imwrite(str(partial / f"frame{index:04d}.jpg"), frames[index], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    partial.rename(folder)
    return folder


def gallery_folder(split: PeopleSplit, folder: Path) -> Path:
    """The split's gallery photos as `folder`/<person>/<photo>, which `edgeface train` reads (made once)."""
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for path, person in split.files:
            if split.roles[path] == "gallery":
                (partial / person).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, partial / person / Path(path).name)
        partial.rename(folder)
    return folder


def edgeface_command(*args: str) -> None:
    """Runs `edgeface ARGS` with this interpreter; stops the report with its stderr if it fails."""
    run = subprocess.run([sys.executable, "-m", "edgeface", *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"edgeface {' '.join(args)} failed ({run.returncode}):\n{run.stderr[-3000:]}")


def built_model(
    name: str, train_args: list[str], convert_args: list[str], gallery: Path, cache: Path, say: Callable[[str], None]
) -> Path:
    """cache/NAME.tflite: `edgeface train GALLERY TRAIN_ARGS` then `edgeface convert CONVERT_ARGS`, unless it is
    there already."""
    model = cache / f"{name}.tflite"
    if model.is_file():
        return model
    say(f"building {model} with edgeface train and convert (needs TensorFlow; once, then cached)")
    started = time.monotonic()
    keras_file = cache / f"{name}.h5"
    edgeface_command("train", str(gallery), "-o", str(keras_file), "--seed", "0", *train_args)
    # the report times this model; it does not judge its accuracy, so a low agreement must not stop it
    edgeface_command("convert", str(keras_file), "-o", str(model), "--min-agreement", "0", *convert_args)
    say(f"built {model} in {time.monotonic() - started:.0f} s")
    return model


def classic_model(gallery: Path, cache: Path, say: Callable[[str], None]) -> Path:
    """The classic CNN (64×64 RGB, Haar), trained CLASSIC_EPOCHS epochs on the gallery photos, int8."""
    return built_model("classic", ["--arch", "classic", "--epochs", str(CLASSIC_EPOCHS)], [], gallery, cache, say)


def embedder_model(gallery: Path, yunet: Path, cache: Path, say: Callable[[str], None]) -> Path:
    """dlib's embedder, int8, with the gallery photos' people as its gallery; it aligns faces with YuNet."""
    yunet_flag = ["--yunet-model", str(yunet)]
    return built_model("embedder", ["--arch", "embedder", *yunet_flag], yunet_flag, gallery, cache, say)
