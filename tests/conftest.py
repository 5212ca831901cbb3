"""Shared fixtures: real images from scikit-image written as real files, and the edgeface CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture()
def astronaut_file(tmp_path: Path) -> Path:
    """A real photo with one face (scikit-image's astronaut), written as PNG."""
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), skimage_bgr("astronaut"))
    return path
