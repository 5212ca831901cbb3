"""`edgeface watch` settings: TOML file, flags over it, and errors that name the key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgeface.config import KEYS, ConfigError, read_file, resolve
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



def test_the_log_throttle_lets_a_burst_through_then_counts_what_it_held_back():
    throttle = Throttle(burst=3, per_second=0.001)
    records = [logging.LogRecord("edgeface", logging.ERROR, __file__, 1, f"bad {i}", None, None) for i in range(10)]
    passed = [record for record in records if throttle.filter(record)]
    assert len(passed) == 3 and throttle.suppressed == 7
