"""`edgeface watch` settings: TOML file, flags over it, and errors that name the key."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from edgeface.config import KEYS, MAX_CONFIG_BYTES, ConfigError, read_file, resolve
from edgeface.throttle import Throttle


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeface.toml"
    path.write_text(text)
    return path


def test_flags_override_the_file_and_the_defaults_fill_the_rest(tmp_path: Path):
    config = write(tmp_path, 'model = "/m.tflite"\nthreads = 2\n[folder]\npath = "/in"\npoll_interval = 2\n')
    settings = resolve(config, {"threads": 3, "folder.recursive": None})
    assert settings["threads"] == 3 and settings["folder.poll_interval"] == 2.0  # an int is a fine float
    assert settings["folder.recursive"] is False and settings["camera.fps"] == KEYS["camera.fps"].default


@pytest.mark.parametrize(
    "text, message",
    [
        ('model = "/m"\n[folder]\npath = "/in"\nrecursive = "yes"\n', "folder.recursive must be a bool"),
        ('model = "/m"\n[folder]\npath = "/in"\n[camera]\nfps = 0\n', "camera.fps must be above 0"),
        ('model = "/m"\nlog_level = "loud"\n[folder]\npath = "/in"\n', "log_level must be one of"),
        ('model = "/m"\n[folder]\npath = "/in"\n[detector]\nname = "dlib"\n', "detector.name must be one of"),
        ('model = "/m"\n[folder]\npath = "/in"\nmove_dne = "/d"\n', "unknown key 'folder.move_dne'"),
        ('model = "/m"\n[folder\n', "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_key_and_the_reason(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError, match=message):
        resolve(write(tmp_path, text), {})


def test_exactly_one_source_and_a_model_are_needed(tmp_path: Path):
    with pytest.raises(ConfigError, match="either a folder"):
        resolve(write(tmp_path, 'model = "/m"\n[folder]\npath = "/in"\n[camera]\nsource = "0"\n'), {})
    camera_only = resolve(write(tmp_path, 'model = "/m"\n[folder]\npath = "/in"\n'), {"folder.path": "", "camera.source": "0"})
    assert camera_only["folder.path"] is None and camera_only["camera.source"] == "0"
    with pytest.raises(ConfigError, match="no model"):
        resolve(write(tmp_path, '[folder]\npath = "/in"\n'), {})
    with pytest.raises(ConfigError, match="cannot read the config"):
        read_file(tmp_path / "missing.toml")



NUMBERS = [key for key, spec in KEYS.items() if spec.kind in (int, float)]


@pytest.mark.parametrize("key", NUMBERS)
def test_every_number_has_a_sane_range(tmp_path: Path, key: str):
    """Huge, infinite, not-a-number and negative values are refused at start, naming the key: a
    retention of 1e6 days crashed the daemon once the clock was synchronised, 100000 threads
    segfaulted it, and a poll interval of inf never polled."""
    config = write(tmp_path, 'model = "/m"\n[folder]\npath = "/in"\n')
    bad = [-1, 10**9] if KEYS[key].kind is int else [float("inf"), float("nan"), -1.0, 1e12]
    for value in bad:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            resolve(config, {key: value})
    assert resolve(config, {key: KEYS[key].default})[key] == KEYS[key].default


def test_infinity_in_the_file_is_refused_too(tmp_path: Path):
    with pytest.raises(ConfigError, match="retention_days must be 0"):
        resolve(write(tmp_path, 'model = "/m"\nretention_days = inf\n[folder]\npath = "/in"\n'), {})


def test_a_config_that_is_not_a_small_regular_file_is_not_read(tmp_path: Path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    for path in (Path("/dev/zero"), fifo, tmp_path):
        with pytest.raises(ConfigError, match="not a regular file|cannot read the config"):
            read_file(path)
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        read_file(huge)
    (tmp_path / "latin1.toml").write_bytes(b'model = "/m\xe9"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_file(tmp_path / "latin1.toml")


def test_the_log_throttle_lets_a_burst_through_then_counts_what_it_held_back():
    throttle = Throttle(burst=3, per_second=0.001)
    records = [logging.LogRecord("edgeface", logging.ERROR, __file__, 1, f"bad {i}", None, None) for i in range(10)]
    passed = [record for record in records if throttle.filter(record)]
    assert len(passed) == 3 and throttle.suppressed == 7
