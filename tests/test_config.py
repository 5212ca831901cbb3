"""`edgeface watch` settings: one typed tree from the TOML file and the flags, errors that name the key
or the flag, the flags derived from the tree, and YuNet's file carried to the workers."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
from pathlib import Path

import cv2
import pytest

from edgeface.cli import build_parser
from edgeface.declared import value_at, with_values
from edgeface.flags import given
from edgeface.images import read_input
from edgeface.settings import (
    KEYS,
    MAX_CONFIG_BYTES,
    ConfigError,
    DetectorOverrides,
    WatchSettings,
    from_flags,
    load_settings,
    read_file,
)
from edgeface.throttle import Throttle
from edgeface.workers import PipelineRecipe, process_all
from helpers import YUNET, Classifier, astronaut, needs_yunet

SOURCE = 'model = "/m"\n[folder]\npath = "/in"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeface.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def no_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags' variables, if the caller has them set, would count as flags given."""
    for variable in ("EDGEFACE_MODEL", "EDGEFACE_YUNET_MODEL"):
        monkeypatch.delenv(variable, raising=False)


def config_of(values: dict[str, str]) -> str:
    """A config of `values` (dotted key: TOML literal), with a model and a folder unless they are given."""
    values = {"model": '"/m"', "folder.path": '"/in"', **values}
    tables: dict[str, list[str]] = {}
    for name, value in values.items():
        table, _, leaf = name.rpartition(".")
        tables.setdefault(table, []).append(f"{leaf} = {value}")
    return "".join(f"[{table}]\n" * bool(table) + "".join(f"{line}\n" for line in lines) for table, lines in tables.items())


def watch_parser() -> argparse.ArgumentParser:
    commands = next(action for action in build_parser()._actions if action.dest == "command")
    return commands.choices["watch"]


def test_flags_override_the_file_and_the_defaults_fill_the_rest(tmp_path: Path):
    config = write(tmp_path, 'model = "/m.tflite"\nthreads = 2\n[folder]\npath = "/in"\npoll_interval = 2\n')
    settings = load_settings(config, {"threads": 3, "folder.recursive": None})
    assert settings.threads == 3 and settings.folder.poll_interval == 2.0  # an int is a fine float
    assert settings.folder.recursive is False and settings.camera.fps == KEYS["camera.fps"].default
    assert isinstance(settings, WatchSettings) and settings.model == "/m.tflite"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.threads = 4  # built once: a reload builds a new tree


def test_the_command_line_beats_the_file_which_beats_the_defaults(tmp_path: Path):
    config = write(tmp_path, SOURCE.replace("[folder]", "threads = 2\n[detector]\nmin_face = 40\n[folder]")
                   + "recursive = true\n")  # fmt: skip
    args = watch_parser().parse_args(["--config", str(config), "--no-recursive", "--max-faces", "3"])
    settings = load_settings(args.config, given(args, WatchSettings))
    assert settings.threads == 2 and settings.detector.min_face == 40  # from the file, no flag given
    assert settings.folder.recursive is False and settings.detector.max_faces == 3  # flags
    assert settings.log_level == "info" and settings.detector.name is None  # defaults


def test_only_the_flags_given_reach_the_settings_by_their_dotted_keys():
    args = watch_parser().parse_args(["/elsewhere", "--fps", "5"])
    assert given(args, WatchSettings) == {"folder.path": "/elsewhere", "camera.fps": 5.0}


@pytest.mark.parametrize(
    "text, message",
    [
        ('model = "/m"\n[folder]\npath = "/in"\nrecursive = "yes"\n', "folder.recursive must be a bool"),
        ('model = "/m"\n[folder]\npath = "/in"\n[camera]\nfps = 0\n', "camera.fps must be above 0"),
        ('model = "/m"\nlog_level = "loud"\n[folder]\npath = "/in"\n', "log_level must be one of"),
        ('model = "/m"\nlog_level = ""\n[folder]\npath = "/in"\n', "log_level must be one of"),
        ('model = "/m"\n[folder]\npath = "/in"\n[detector]\nname = "dlib"\n', "detector.name must be one of"),
        ('model = "/m"\n[folder]\npath = "/in"\nmove_dne = "/d"\n', "unknown key 'folder.move_dne'"),
        ('model = "/m"\n[folder]\npath = "/in"\n[dtector]\nname = "haar"\n', "unknown key 'dtector.name'"),
        ('model = 3\n[folder]\npath = "/in"\n', "model must be a str, not 3"),
        ('model = "/m"\n[folder\n', "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_key_and_the_reason(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), {})


def test_exactly_one_source_and_a_model_are_needed(tmp_path: Path):
    with pytest.raises(ConfigError, match="either a folder"):
        load_settings(write(tmp_path, 'model = "/m"\n[folder]\npath = "/in"\n[camera]\nsource = "0"\n'), {})
    camera_only = load_settings(write(tmp_path, SOURCE), {"folder.path": "", "camera.source": "0"})
    assert camera_only.folder.path is None and camera_only.camera.source == "0"
    with pytest.raises(ConfigError, match="no model"):
        load_settings(write(tmp_path, '[folder]\npath = "/in"\n'), {})
    with pytest.raises(ConfigError, match="cannot read the config"):
        read_file(tmp_path / "missing.toml")


CHECKED = [name for name, key in KEYS.items() if key.check]


def bad_values(name: str) -> list[object]:
    """Values outside the key's range (or list) but of its type."""
    key = KEYS[name]
    if key.check.choices:
        return ["loud", "Haar"]
    if key.kind is str:  # a topic: a wildcard, or nothing, cannot be published to
        return ["house/#", ""]
    return [-1, 10**9] if key.kind is int else [math.inf, math.nan, -1.0, 1e12]


def test_every_number_and_every_list_has_a_check():
    assert {name for name, key in KEYS.items() if key.kind in (int, float)} <= set(CHECKED)
    assert {"log_level", "detector.name"} <= set(CHECKED)


@pytest.mark.parametrize("name", CHECKED)
def test_every_check_refuses_values_out_of_range_naming_the_key_or_the_flag(tmp_path: Path, name: str):
    """Huge, infinite, not-a-number and negative values are refused at start, naming the key: a
    retention of 1e6 days crashed the daemon once the clock was synchronised, 100000 threads
    segfaulted it, and a poll interval of inf never polled."""
    key, config = KEYS[name], write(tmp_path, SOURCE)
    for value in bad_values(name):
        written = "nan" if value != value else "inf" if value == math.inf else repr(value).replace("'", '"')
        with pytest.raises(ConfigError, match=re.escape(f"{name} {key.check.reason}, not {value!r}")):
            (tmp_path / "bad.toml").write_text(config_of({name: written}))
            load_settings(tmp_path / "bad.toml", {})
        with pytest.raises(ConfigError, match="^" + re.escape(f"{key.flags[-1]} {key.check.reason}, not {value!r}")):
            load_settings(config, {name: value})
    if key.default is not None:
        assert value_at(load_settings(config, {name: key.default}), name) == key.default


@pytest.mark.parametrize("name", list(KEYS))
def test_every_key_refuses_a_value_of_another_type(tmp_path: Path, name: str):
    wrong = [1.5] if KEYS[name].kind is not float else ["fast"]
    if KEYS[name].kind is not bool:
        wrong.append(True)  # a bool is not a number here, nor a text
    for value in wrong:
        with pytest.raises(ConfigError, match=f"must be an? {KEYS[name].kind.__name__}, not {value!r}"):
            load_settings(write(tmp_path, SOURCE), {name: value})


def test_infinity_in_the_file_is_refused_too(tmp_path: Path):
    with pytest.raises(ConfigError, match="retention_days must be 0"):
        load_settings(write(tmp_path, 'model = "/m"\nretention_days = inf\n[folder]\npath = "/in"\n'), {})


def test_a_config_that_is_not_a_small_regular_file_is_not_read(tmp_path: Path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    for path in (Path("/dev/zero"), fifo, tmp_path):
        with pytest.raises(ConfigError, match="not a regular file|cannot read the config"):
            read_file(path)
    with pytest.raises(ConfigError, match="larger than the limit of 1 MiB"):
        read_file(huge)
    (tmp_path / "latin1.toml").write_bytes(b'model = "/m\xe9"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_file(tmp_path / "latin1.toml")


# -- the flags, derived from the tree ---------------------------------------------------------------


def test_watch_has_one_flag_per_key_with_the_keys_type_choices_and_help():
    actions = {action.dest: action for action in watch_parser()._actions}
    assert set(actions) == {*(key.dest for key in KEYS.values()), "help", "config", "json"}
    for name, key in KEYS.items():
        action = actions[key.dest]
        assert action.help.startswith(key.help), name
        if action.option_strings:
            assert set(key.flags) <= set(action.option_strings), name
        else:
            assert action.metavar == key.flags[0] == "FOLDER"
        if key.kind is bool:
            assert isinstance(action, argparse.BooleanOptionalAction), name
        else:
            assert action.type is key.kind and action.choices == (key.check.choices if key.check else None), name
    flags = [flag for key in KEYS.values() for flag in key.flags]
    assert len(flags) == len(set(flags)), "two keys share a flag"


def test_the_help_names_each_default_and_where_the_yunet_file_comes_from(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["watch", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for key in KEYS.values():
        assert key.flags[-1] in shown
    assert "threads for LiteRT and for OpenCV's detector (default: 1)" in shown
    assert "(default: $EDGEFACE_YUNET_MODEL)" in shown and "--detector {haar,yunet,none}" in shown


def test_the_yunet_variable_is_the_flags_default_and_the_flag_beats_it(monkeypatch: pytest.MonkeyPatch):
    """$EDGEFACE_YUNET_MODEL is read where the parser is built, as the flag's default, and nowhere else."""
    monkeypatch.setenv("EDGEFACE_YUNET_MODEL", "/from/the/environment.onnx")
    for command in ("scan x.jpg", "watch", "enroll alice", "verify a.jpg", "eval faces/ --model m.tflite"):
        assert build_parser().parse_args(command.split()).yunet_model == "/from/the/environment.onnx"
    args = build_parser().parse_args(["watch", "--yunet-model", "/given.onnx"])
    assert given(args, WatchSettings)["detector.yunet_model"] == "/given.onnx"


def test_scan_takes_the_same_detector_flags_and_names_the_flag_out_of_range():
    args = build_parser().parse_args(["scan", "x.jpg", "--detector", "yunet", "--min-face", "20", "--margin", "0.2"])
    overrides = from_flags(DetectorOverrides, given(args, DetectorOverrides))
    assert overrides == DetectorOverrides(name="yunet", margin=0.2, min_face=20)
    for flag, value, reason in (("--min-face", "0", "must be 1 to 10000 pixels, not 0"),
                                ("--margin", "2", "must be between 0 and 1, not 2.0")):  # fmt: skip
        args = build_parser().parse_args(["scan", "x.jpg", flag, value])
        with pytest.raises(ConfigError, match=f"^{flag} {reason}$"):
            from_flags(DetectorOverrides, given(args, DetectorOverrides))


def test_a_command_own_argument_is_not_taken_for_a_detector_flag():
    """enroll's NAME is `args.name`; the detector's name is --detector, kept as `args.detector`."""
    args = build_parser().parse_args(["enroll", "dana", "photo.jpg"])
    assert from_flags(DetectorOverrides, given(args, DetectorOverrides)) == DetectorOverrides()


def test_a_reload_keeps_what_only_a_restart_may_change():
    running = WatchSettings(db="/a.db")
    new = with_values(WatchSettings(), {"db": "/b.db", "threads": 4, "folder.path": "/in"})
    kept = with_values(new, {key: value_at(running, key) for key in ("db", "folder.path")})
    assert (kept.db, kept.folder.path, kept.threads) == ("/a.db", None, 4)


# -- YuNet's file, carried to the workers -------------------------------------------------------------


@needs_yunet
def test_yunet_file_reaches_a_worker_process_without_the_environment(classifier: Classifier, tmp_path: Path):
    """The recipe is pickled to spawned workers; the file travels in it, not in $EDGEFACE_YUNET_MODEL (a worker
    without it could not build its detector, and the pool would break)."""
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut())
    detector = DetectorOverrides(name="yunet", yunet_model=str(YUNET))
    recipe = PipelineRecipe(model=str(classifier.tflite_file), detector=detector)
    pipeline = recipe.build()
    (result,) = list(process_all([read_input(str(photo))], pipeline, recipe, workers=2))
    assert result.error is None and len(result.faces) == 1
    assert os.environ.get("EDGEFACE_YUNET_MODEL") is None  # nobody put it there on the way


def test_the_log_throttle_lets_a_burst_through_then_counts_what_it_held_back():
    throttle = Throttle(burst=3, per_second=0.001)
    records = [logging.LogRecord("edgeface", logging.ERROR, __file__, 1, f"bad {i}", None, None) for i in range(10)]
    passed = [record for record in records if throttle.filter(record)]
    assert len(passed) == 3 and throttle.suppressed == 7
