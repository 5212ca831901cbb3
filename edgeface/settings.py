"""`edgeface watch`'s settings: one frozen, typed tree, built once from the TOML file and the flags.

Every field declares its default, its check and its help (see `edgeface.declared`), so an invalid
file or flag fails at start naming the key and the reason, `watch`'s flags are derived from the
tree (`edgeface.flags`), and `systemd/edgeface.toml` documents exactly its keys (a test compares
them). Keys are dotted by table: `detector.name` is `name` under `[detector]`. `scan` and the other
commands share the tree's `DetectorOverrides`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from edgeface.declared import Check, Checked, Invalid, Key, built, dotted, keys_of, one_of, section, setting, within
from edgeface.detect import DETECTOR_NAMES, YUNET_MODEL_VARIABLE
from edgeface.paths import FileRefused, read_regular_file
from edgeface.preprocess import Preprocessing

DEFAULT_CONFIG = Path("/etc/edgeface/edgeface.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
DAYS = 36_500  # a hundred years: the most any age setting may say (more overflows the date arithmetic)
HOUR = 3600.0
SECONDS = within(0, HOUR, "must be above 0 and at most 3600 seconds", low_open=True)
MAX_CONFIG_BYTES = 1 << 20  # a config is a few kB; a special file or a huge one is not read

T = TypeVar("T")


def publishable(topic: str) -> bool:
    """Whether MQTT can publish under `topic`: no wildcard (+ #) or NUL, not empty, at most 1000 bytes."""
    return not any(mark in topic for mark in "+#\0") and bool(topic.strip("/")) and len(topic.encode()) <= 1000


TOPIC = Check(publishable, "must be a topic to publish to: no + # or NUL, not empty, at most 1000 bytes")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key (or the flag) and the reason."""


@dataclass(frozen=True)
class DetectorOverrides(Checked):
    """How this run departs from the model's own detector and crop (None keeps the model's), and where
    YuNet's file is on this machine."""

    name: str | None = setting(None, "override the model's face detector", one_of(DETECTOR_NAMES),
                               flags=("--detector",))  # fmt: skip
    yunet_model: str | None = setting(None, "YuNet's ONNX file, for a model or --detector that uses yunet",
                                      metavar="FILE", env=YUNET_MODEL_VARIABLE)  # fmt: skip
    margin: float | None = setting(None, "override the model's crop margin (a fraction of the box)",
                                   within(0, 1, "must be between 0 and 1"))  # fmt: skip
    min_face: int | None = setting(None, "override the smallest face side reported, in pixels",
                                   within(1, 10_000, "must be 1 to 10000 pixels"), metavar="PX")  # fmt: skip
    max_faces: int | None = setting(None, "keep only the N largest faces of each image (0: all)",
                                    within(0, 1000, "must be 0 (all) to 1000"), metavar="N")  # fmt: skip

    search_face: int | None = setting(None, "YuNet: the side, in pixels searched, of the smallest face: photos are "
                                      "shrunk by PX / min-face before the search (0: searched at their size)",
                                      within(0, 10_000, "must be 0 to 10000"), metavar="PX")  # fmt: skip

    def applied_to(self, spec: Preprocessing) -> Preprocessing:
        """The model's preprocessing `spec` with these overrides; YuNet's file and search_face go to a yunet
        detector, whether the model or --detector names it."""
        changes = {"min_size": self.min_face, "max_faces": self.max_faces, "model": self.yunet_model,
                   "search_face": self.search_face}  # fmt: skip
        spec = spec.with_detector(self.name, **{key: value for key, value in changes.items() if value is not None})
        return spec if self.margin is None else replace(spec, margin=self.margin)


@dataclass(frozen=True)
class FolderSettings(Checked):
    """[folder]: the folder watched, and where its files go once their outcome is logged."""

    path: str | None = setting(None, "the folder to watch (or use --camera)", flags=("FOLDER",))
    recursive: bool = setting(False, "also watch sub-folders", flags=("-r", "--recursive"))
    poll: bool = setting(False, "list the folder instead of using inotify (network shares)")
    poll_interval: float = setting(5.0, "how often --poll looks", SECONDS, metavar="SECONDS")
    settle: float = setting(2.0, "seconds a file must stay unchanged before a failure to read it is recorded (a "
                            "writer may still be adding to it), or before a listing takes it", SECONDS,
                            metavar="SECONDS")  # fmt: skip
    move_done: str | None = setting(None, "move each file here once its result is committed", metavar="DIR")
    move_failed: str | None = setting(None, "move files that could not be processed here", metavar="DIR")


@dataclass(frozen=True)
class CameraSettings(Checked):
    """[camera]: the camera watched, how often it is read, and how long its faults are waited out."""

    source: str | None = setting(None, "device index, /dev/videoN, rtsp:// or http:// URL, or a video file",
                                 flags=("--camera",), metavar="SOURCE")  # fmt: skip
    fps: float = setting(2.0, "camera: frames classified per second at most",
                         within(0, 1000, "must be above 0 and at most 1000", low_open=True))  # fmt: skip
    open_timeout: float = setting(10.0, "camera: seconds to wait for it to open before trying again", SECONDS,
                                  metavar="SECONDS")  # fmt: skip
    read_timeout: float = setting(5.0, "camera: seconds without a frame before it counts as lost", SECONDS,
                                  metavar="SECONDS")  # fmt: skip
    max_backoff: float = setting(60.0, "camera: the longest wait between tries to reopen it (it doubles up to this)",
                                 within(0, 24 * HOUR, "must be above 0 and at most 86400 seconds", low_open=True),
                                 metavar="SECONDS")  # fmt: skip
    per_frame: bool = setting(False, "camera: also log every frame's faces, not only one row per appearance")
    recheck: float = setting(0.5, "camera: once a face in view has been named in 3 frames, name it again only every "
                             "this many seconds; the frames between move its track without a vote (0: name every "
                             "face in every frame; per_frame names every frame)",
                             within(0, 60, "must be 0 to 60 seconds"), metavar="SECONDS")  # fmt: skip


@dataclass(frozen=True)
class MqttSettings(Checked):
    """[mqtt]: the broker each result goes to as an event, through the log's outbox (off while `host` is unset)."""

    host: str | None = setting(None, "MQTT broker to publish each result to as an event (unset: none)",
                               flags=("--mqtt-host",), metavar="HOST")  # fmt: skip
    port: int = setting(1883, "the broker's port (8883 is the usual one with TLS)",
                        within(1, 65535, "must be 1 to 65535"), flags=("--mqtt-port",), metavar="PORT")  # fmt: skip
    tls_ca_file: str | None = setting(None, "CA certificates the broker's must chain to; turns TLS on",
                                      flags=("--mqtt-tls-ca-file",), metavar="FILE")  # fmt: skip
    tls_certfile: str | None = setting(None, "this box's client certificate, if the broker asks for one",
                                       flags=("--mqtt-tls-certfile",), metavar="FILE")  # fmt: skip
    tls_keyfile: str | None = setting(None, "the client certificate's private key (default: in tls_certfile)",
                                      flags=("--mqtt-tls-keyfile",), metavar="FILE")  # fmt: skip
    username: str | None = setting(None, "user name at the broker", flags=("--mqtt-username",), metavar="NAME")
    password_file: str | None = setting(None, "file holding the broker password, read once at start (a password "
                                        "itself is never given)", flags=("--mqtt-password-file",),
                                        metavar="FILE")  # fmt: skip
    device: str | None = setting(None, "this box's name in events (default: the host name)",
                                 flags=("--mqtt-device",), metavar="NAME")  # fmt: skip
    client_id: str | None = setting(None, "MQTT client id, unique per broker (default: edgeface-DEVICE)",
                                    flags=("--mqtt-client-id",), metavar="ID")  # fmt: skip
    topic_prefix: str | None = setting(None, "topics are PREFIX/events and PREFIX/availability (default: "
                                       "edgeface/DEVICE)", flags=("--mqtt-topic-prefix",),
                                       metavar="PREFIX")  # fmt: skip
    share_people: bool = setting(False, "share the people enrolled here with the fleet's boxes (embeddings, never "
                                 "photos) and take theirs, for the same network; forgetting one reaches them too",
                                 flags=("--mqtt-share-people",))  # fmt: skip
    fleet_prefix: str = setting("edgeface", "shared people go to PREFIX/enrolments/NETWORK/ID and PREFIX/forgotten/"
                                "NAME; the boxes that share people use the same one", flags=("--mqtt-fleet-prefix",),
                                metavar="PREFIX")  # fmt: skip
    keepalive: int = setting(60, "seconds between pings; the broker declares the box offline after 1.5 times this",
                             within(5, 3600, "must be 5 to 3600 seconds"), flags=("--mqtt-keepalive",),
                             metavar="SECONDS")  # fmt: skip
    outbox_max_events: int = setting(100_000, "events kept while the broker is away; beyond it the oldest are "
                                     "dropped, counted in the journal", within(1, 10_000_000, "must be 1 to 10000000"),
                                     flags=("--mqtt-outbox-max-events",), metavar="N")  # fmt: skip
    home_assistant: bool = setting(False, "announce the box to Home Assistant (MQTT discovery): the last person "
                                   "recognised and the unknown faces today",
                                   flags=("--mqtt-home-assistant",))  # fmt: skip
    home_assistant_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix", TOPIC,
                                         flags=("--mqtt-home-assistant-prefix",), metavar="PREFIX")  # fmt: skip


@dataclass(frozen=True)
class WatchSettings(Checked):
    """Everything `edgeface watch` is told; `systemd/edgeface.toml` explains each key."""

    model: str | None = setting(None, "int8 .tflite from `edgeface convert`", metavar="FILE", env="EDGEFACE_MODEL")
    db: str | None = setting(None, "SQLite log (default: $EDGEFACE_DB, else $STATE_DIRECTORY/edgeface.db, else "
                             "~/.local/state/edgeface/edgeface.db)", metavar="FILE")  # fmt: skip
    log_level: str = setting("info", "what goes to stderr", one_of(LOG_LEVELS))
    threads: int = setting(1, "threads for LiteRT and for OpenCV's detector", within(1, 64, "must be 1 to 64"))
    retention_days: float = setting(0.0, "delete log rows older than this many days (0: keep all)",
                                    within(0, DAYS, f"must be 0 (keep everything) to {DAYS} days"),
                                    metavar="DAYS")  # fmt: skip
    save_crops: bool = setting(False, "also keep a JPEG of each face found in a folder's photos, next to the log")
    crops_days: float = setting(7.0, "delete saved crops after this many days",
                                within(0, DAYS, f"must be above 0 and at most {DAYS} days", low_open=True),
                                metavar="DAYS")  # fmt: skip
    detector: DetectorOverrides = section(DetectorOverrides)
    folder: FolderSettings = section(FolderSettings)
    camera: CameraSettings = section(CameraSettings)
    mqtt: MqttSettings = section(MqttSettings)


KEYS: dict[str, Key] = keys_of(WatchSettings)


def _checked(key: Key, value: object, origin: str | None) -> object:
    """`value` as `key` holds it, or ConfigError naming the key (as given in `origin`) or, for a
    value from the command line (no origin), the flag."""
    try:
        return key.converted(value)
    except Invalid as error:
        where = f"{origin}: {key.name}" if origin else key.flags[-1]
        raise ConfigError(f"{where} {error.reason}") from None


def read_file(path: Path) -> dict[str, object]:
    """The checked settings in a TOML file, by dotted key; only a regular file of at most
    MAX_CONFIG_BYTES is read (`/dev/zero` or a pipe would be read forever)."""
    try:
        table = tomllib.loads(read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileRefused as refused:
        raise ConfigError(f"the config {path} is {refused.strerror}") from None
    except OSError as error:
        raise ConfigError(f"cannot read the config {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    settings = {}
    for name, value in dotted(table).items():
        if name not in KEYS:
            raise ConfigError(f"{path}: unknown key {name!r}; known keys: {', '.join(KEYS)}")
        settings[name] = _checked(KEYS[name], value, str(path))
    return settings


def _flag_values(keys: Mapping[str, Key], flags: Mapping[str, object]) -> dict[str, object]:
    """The flags given (by dotted key; None: not given), checked; ConfigError names a flag out of range."""
    return {name: _checked(keys[name], value, None) for name, value in flags.items() if value is not None}


def from_flags(kind: type[T], flags: Mapping[str, object]) -> T:
    """`kind` (the tree, or one of its sections) with the flags given over its defaults."""
    return built(kind, _flag_values(keys_of(kind), flags))


def mqtt_settings(config_file: Path | None, flags: Mapping[str, object]) -> MqttSettings:
    """The `[mqtt]` table of `config_file` (every key of the file checked; the default file when it exists and
    none is named, as for `watch`), with the flags given (by key within the table) over it: `scan --publish`."""
    values = read_file(config_file or DEFAULT_CONFIG) if config_file or DEFAULT_CONFIG.is_file() else {}
    table = {key.removeprefix("mqtt."): value for key, value in values.items() if key.startswith("mqtt.")}
    return built(MqttSettings, {**table, **_flag_values(keys_of(MqttSettings), flags)})


def load_settings(config_file: Path | None, flags: Mapping[str, object]) -> WatchSettings:
    """The daemon's settings: the defaults, then the file, then the flags that were given (not None;
    by dotted key). Without `config_file` the default file is read when it exists, so a box set up
    with the example config and a one-off run with flags alone both work."""
    values: dict[str, object] = {}
    if config_file is not None:
        values.update(read_file(config_file))
    elif DEFAULT_CONFIG.is_file():
        values.update(read_file(DEFAULT_CONFIG))
    values.update(_flag_values(KEYS, flags))
    settings = built(WatchSettings, values)
    if not settings.model:
        raise ConfigError("no model: set `model` in the config or pass --model FILE.tflite")
    if bool(settings.folder.path) == bool(settings.camera.source):
        raise ConfigError("watch either a folder (folder.path, or FOLDER) or a camera (camera.source, or --camera)")
    return settings
