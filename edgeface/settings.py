"""`edgeface watch` settings: a TOML file, overridden by flags, checked once at start.

Every key is declared in KEYS with its type, default and check, so an invalid file fails at start
naming the key and the reason, and `systemd/edgeface.toml` documents exactly these keys (a test
compares them). Keys are dotted by table: `detector.name` is `name` under `[detector]`.
"""

from __future__ import annotations

import math
import os
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeface.detect import DETECTOR_NAMES

DEFAULT_CONFIG = Path("/etc/edgeface/edgeface.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and the reason."""


@dataclass(frozen=True)
class Key:
    """One setting: its type, its default (None: unset) and a check with the reason it fails."""

    kind: type
    default: object
    check: Callable[[object], bool] = lambda value: True
    reason: str = ""


def _within(low: float, high: float, low_open: bool = False) -> Callable[[object], bool]:
    """A check that a number is finite and in [low, high] (or (low, high] with `low_open`)."""
    return lambda value: math.isfinite(value) and (low < value if low_open else low <= value) and value <= high


DAYS = 36_500  # a hundred years: the most any age setting may say (more overflows the date arithmetic)
HOUR = 3600.0

KEYS: dict[str, Key] = {
    "model": Key(str, None),
    "db": Key(str, None),
    "log_level": Key(str, "info", lambda v: v in LOG_LEVELS, f"must be one of {', '.join(LOG_LEVELS)}"),
    "threads": Key(int, 1, _within(1, 64), "must be 1 to 64"),
    "retention_days": Key(float, 0.0, _within(0, DAYS), f"must be 0 (keep everything) to {DAYS} days"),
    "save_crops": Key(bool, False),
    "crops_days": Key(float, 7.0, _within(0, DAYS, low_open=True), f"must be above 0 and at most {DAYS} days"),
    "detector.name": Key(str, None, lambda v: v in DETECTOR_NAMES, f"must be one of {', '.join(DETECTOR_NAMES)}"),
    "detector.yunet_model": Key(str, None),
    "detector.margin": Key(float, None, _within(0, 1), "must be between 0 and 1"),
    "detector.min_face": Key(int, None, _within(1, 10_000), "must be 1 to 10000 pixels"),
    "detector.max_faces": Key(int, None, _within(0, 1000), "must be 0 (all) to 1000"),
    "folder.path": Key(str, None),
    "folder.recursive": Key(bool, False),
    "folder.poll": Key(bool, False),
    "folder.poll_interval": Key(float, 5.0, _within(0, HOUR, low_open=True), "must be above 0 and at most 3600 seconds"),
    "folder.move_done": Key(str, None),
    "folder.move_failed": Key(str, None),
    "camera.source": Key(str, None),
    "camera.fps": Key(float, 2.0, _within(0, 1000, low_open=True), "must be above 0 and at most 1000"),
    "camera.open_timeout": Key(float, 10.0, _within(0, HOUR, low_open=True), "must be above 0 and at most 3600 seconds"),
    "camera.read_timeout": Key(float, 5.0, _within(0, HOUR, low_open=True), "must be above 0 and at most 3600 seconds"),
    "camera.max_backoff": Key(float, 60.0, _within(0, 24 * HOUR, low_open=True),
                              "must be above 0 and at most 86400 seconds"),  # fmt: skip
    "camera.per_frame": Key(bool, False),
}
MAX_CONFIG_BYTES = 1 << 20  # a config is a few kB; a special file or a huge one is not read


def _flatten(table: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[key] = value
    return flat


def _checked(key: str, value: object, origin: str) -> object:
    """`value` converted to the key's type, or ConfigError saying which key and why."""
    if key not in KEYS:
        raise ConfigError(f"{origin}: unknown key {key!r}; known keys: {', '.join(KEYS)}")
    spec = KEYS[key]
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.kind is str and value == "":
        return None  # an empty string leaves the key unset, as the example file shows
    if type(value) is not spec.kind:
        raise ConfigError(f"{origin}: {key} must be a {spec.kind.__name__}, not {value!r}")
    if not spec.check(value):
        raise ConfigError(f"{origin}: {key} {spec.reason}, not {value!r}")
    return value


def read_file(path: Path) -> dict[str, object]:
    """The checked settings in a TOML file, by dotted key; only a regular file of at most
    MAX_CONFIG_BYTES is read (`/dev/zero` or a pipe would be read forever)."""
    try:
        with open(path, "rb", opener=_open_without_blocking) as file:
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise ConfigError(f"the config {path} is not a regular file")
            content = file.read(MAX_CONFIG_BYTES + 1)
        if len(content) > MAX_CONFIG_BYTES:
            raise ConfigError(f"the config {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB")
        table = tomllib.loads(content.decode("utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the config {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return {key: _checked(key, value, str(path)) for key, value in _flatten(table).items()}


def _open_without_blocking(path: str, flags: int) -> int:
    """Opens without waiting for a writer (a named pipe would block the open itself)."""
    return os.open(path, flags | os.O_NONBLOCK)


def resolve(config_file: Path | None, flags: dict[str, object]) -> dict[str, object]:
    """Every key's value: the default, then the file, then the flags that were given (not None).

    Without `config_file` the default file is read when it exists, so a box set up with the
    example config and a one-off run with flags alone both work.
    """
    settings = {key: spec.default for key, spec in KEYS.items()}
    if config_file is not None:
        settings.update(read_file(config_file))
    elif DEFAULT_CONFIG.is_file():
        settings.update(read_file(DEFAULT_CONFIG))
    for key, value in flags.items():
        if value is not None:
            settings[key] = _checked(key, value, "command line")
    if not settings["model"]:
        raise ConfigError("no model: set `model` in the config or pass --model FILE.tflite")
    if bool(settings["folder.path"]) == bool(settings["camera.source"]):
        raise ConfigError("watch either a folder (folder.path, or FOLDER) or a camera (camera.source, or --camera)")
    return settings
