"""Fixtures every test module may use: the leak check that runs around each test, the committed models and
pictures, and (workstation tier only) the classifier made again by the recipe of the committed one and the real
embedder, dlib's network, trained and converted once for the session; and which tests run by default.

Helpers that are not fixtures are in helpers.py; test modules import them from there, never from here."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import (
    FIXTURES,
    Classifier,
    astronaut,
    command_line,
    kill_processes,
    live_descendants,
    session_helper,
    run_in_process,
    threads_left,
    write_photos,
)
from mqtt_broker import MOSQUITTO_PASSWD, PASSWORD, USER, Broker, free_port, make_ca, missing
from make_fixtures import PEOPLE, PHOTOS, STRANGERS, MadeModel, convert, held_out, lfw_subset, make_classifier

THREAD_GRACE = 2.0  # seconds a thread a test started may take to end after it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leaves out the tests marked `slow` unless -m names them (`pytest -m slow`): the default run and the device
    tier (`-m "not workstation"`, which would replace a `-m "not slow"` in addopts) run without them."""
    if "slow" in config.option.markexpr:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    """Fails a test that leaves a thread or a process of its own running: a daemon nobody stopped, a camera reader
    nobody closed. The processes are killed first, so that a failed test does not hurt the tests after it.

    Compared with what ran before the test, so that nothing pytest or a library keeps for the whole session is
    counted; a thread gets THREAD_GRACE seconds to end, since a closed camera's reader ends a moment later."""
    threads, processes = set(threading.enumerate()), set(live_descendants(os.getpid()))
    yield
    left = [pid for pid in live_descendants(os.getpid()) if pid not in processes]
    left = [pid for pid in left if not session_helper(pid)]
    commands = [command_line(pid) for pid in left]
    kill_processes(left)
    running = threads_left(threads, THREAD_GRACE)
    problems = [f"process {pid} still running: {command}" for pid, command in zip(left, commands)]
    problems += [f"thread {thread.name!r} still running" for thread in running]
    if problems:
        pytest.fail("the test left behind:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    """The committed face / not-face classifier and its 40 held-out patches (tests/make_fixtures.py)."""
    folder = FIXTURES / "held_out"
    return Classifier(FIXTURES / "face_or_not.tflite", folder, held_out(folder))


@pytest.fixture(scope="session")
def photos(classifier: Classifier) -> list[bytes]:
    """The encoded bytes of the 40 held-out PNGs: real pictures, each one face for the classifier's detector."""
    return [path.read_bytes() for path, _ in classifier.held_out]


@pytest.fixture(scope="session")
def fresh_classifier(tmp_path_factory: pytest.TempPathFactory) -> MadeModel:
    """The classifier trained and converted now, by the recipe of the committed one (TensorFlow and scikit-image:
    for tests marked `workstation` only). Its held-out patches are in held_out/ beside it."""
    return make_classifier(tmp_path_factory.mktemp("classifier"), lfw_subset())


@pytest.fixture(scope="session")
def dlib_embedder(tmp_path_factory: pytest.TempPathFactory, lfw_patches: np.ndarray) -> MadeModel:
    """dlib's network as `edgeface train` (detector none, with strangers) and `edgeface convert` make it, once for
    the session: its int8 conversion is the longest of the tier. The training photos are in faces/ beside it: each
    "person" one of lfw_subset's faces in a few photos (helpers.photo). For tests marked `workstation` only."""
    root = tmp_path_factory.mktemp("dlib_embedder")
    rng = np.random.default_rng(5)
    for person in range(PEOPLE):
        write_photos(root / "faces" / f"person{person}", lfw_patches[person], PHOTOS, rng)
    for stranger in STRANGERS:  # 120 stranger photos: enough to claim a 1 % false-accept rate
        write_photos(root / "strangers", lfw_patches[stranger], 2, rng, prefix=f"s{stranger}-")
    keras_file = root / "faces.h5"
    train = run_in_process("train", str(root / "faces"), "-o", str(keras_file), "--detector", "none",
                           "--strangers", str(root / "strangers"))  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "confusion matrix" in train.stdout and "accuracy 1.000" in train.stdout
    assert "unknown rule: nearest centroid within distance" in train.stderr
    return convert(keras_file)


@pytest.fixture(scope="session")
def lfw_patches() -> np.ndarray:
    """scikit-image's lfw_subset as uint8 (200, 25, 25): 100 faces, then 100 non-faces (needs scikit-image)."""
    return lfw_subset()


@pytest.fixture()
def astronaut_file(tmp_path: Path) -> Path:
    """A real photo with one face (scikit-image's astronaut), written as PNG."""
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), astronaut())
    return path


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """mosquitto for the module, open to anonymous clients; skips where it or paho-mqtt is absent."""
    if missing():
        pytest.skip(missing())
    running = Broker(tmp_path_factory.mktemp("broker")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, int, Path]]:
    """mosquitto wanting USER and PASSWORD, on a plain listener and on a TLS one with a CA made here; the broker, the
    TLS port and the CA file."""
    if missing():
        pytest.skip(missing())
    folder = tmp_path_factory.mktemp("secured")
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(folder / "passwords"), USER, PASSWORD], check=True,
                   capture_output=True)  # fmt: skip
    ca, tls_port = make_ca(folder), free_port()
    running = Broker(folder, f"allow_anonymous false\npassword_file {folder}/passwords\nlistener {tls_port} 127.0.0.1\n"
                             f"cafile {ca['ca']}\ncertfile {ca['server']}\nkeyfile {ca['server-key']}").start()  # fmt: skip
    yield running, tls_port, ca["ca"]
    running.stop()
