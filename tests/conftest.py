"""Shared fixtures: real images from scikit-image written as real files, and the edgeface CLI as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def run_edgeface(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs `python -m edgeface ARGS` as a separate process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "edgeface", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def skimage_bgr(name: str) -> np.ndarray:
    """One of scikit-image's bundled pictures as H×W×3 uint8 BGR."""
    from skimage import data

    picture = getattr(data, name)()
    if picture.ndim == 2:
        return cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(picture[..., :3], cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def lfw_patches() -> np.ndarray:
    """scikit-image's lfw_subset as uint8 (200, 25, 25): 100 faces, then 100 non-faces."""
    from skimage import data

    return np.round(data.lfw_subset() * 255).astype(np.uint8)


HELD_OUT_PER_LABEL = 20


@dataclass
class Trained:
    folder: Path
    keras_file: Path
    tflite_file: Path
    held_out: list[tuple[Path, str]]
    convert_report: dict


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, lfw_patches: np.ndarray) -> Trained:
    """A face / not-face model trained and converted by the CLI, with 40 held-out PNGs it never saw."""
    folder = tmp_path_factory.mktemp("e2e")
    held_out = []
    for label, patches in (("face", lfw_patches[:100]), ("not-face", lfw_patches[100:])):
        (folder / "faces" / label).mkdir(parents=True)
        (folder / "held_out" / label).mkdir(parents=True)
        for i, patch in enumerate(patches):
            target = folder / ("held_out" if i < HELD_OUT_PER_LABEL else "faces") / label / f"{i:03d}.png"
            cv2.imwrite(str(target), patch)
            if i < HELD_OUT_PER_LABEL:
                held_out.append((target, label))
    keras_file = folder / "face_or_not.h5"
    train = run_edgeface(
        "train", str(folder / "faces"), "-o", str(keras_file), "--arch", "classic",
        "--detector", "none", "--grayscale", "--input-size", "32", "--epochs", "20", "--batch-size", "16", "--seed", "3",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "confusion matrix" in train.stdout
    convert = run_edgeface("convert", str(keras_file), "--json")
    assert convert.returncode == 0, convert.stderr
    return Trained(folder, keras_file, keras_file.with_suffix(".tflite"), held_out, json.loads(convert.stdout))


@pytest.fixture()
def astronaut_file(tmp_path: Path) -> Path:
    """A real photo with one face (scikit-image's astronaut), written as PNG."""
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), skimage_bgr("astronaut"))
    return path
