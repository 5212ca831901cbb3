"""The files in systemd/ are valid: units pass `systemd-analyze verify`, score well in `security`,
the sysusers file parses, and the example config holds exactly the daemon's keys. Three units run
`edgeface watch`, the fourth `edgeface hub`.

How systemd-analyze behaves here (systemd 252, no systemd running as PID 1, as in CI):
- `verify` loads the unit file on its own; it needs no running systemd. It checks that the
  ExecStart=/ExecReload= binaries exist, so each unit is verified as a copy whose ExecStart points
  at the `edgeface` this test runs with instead of /opt/edgeface/bin/edgeface.
- It does not look up User=/Group=/SupplementaryGroups=, so the edgeface user need not exist.
- An unknown directive or a bad value is only a warning ("Unknown key ...", "Failed to parse
  ..., ignoring"). The default exit code stays 0 for those; with --recursive-errors=no it is 1 (and
  dependencies such as network-online.target are not judged). The test checks both the exit code
  and every output line that names our unit, so a misspelt directive fails either way.
- A template (`name@.service`) is verified as an instance: the copy is written as
  `name@test.service`, which systemd loads like an instance of the template (`%i` = test).
- `security --offline=true FILE` scores the file alone; User=edgeface counts as "a static non-root
  user" without the user having to exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.cli import build_parser
from edgeface.settings import KEYS, read_file
from helpers import REPO

SYSTEMD = REPO / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))
HUB = SYSTEMD / "edgeface-hub.service"
WATCH_UNITS = [unit for unit in UNITS if unit != HUB]
INSTALLED_COMMAND = "/opt/edgeface/bin/edgeface"
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
SYSUSERS = shutil.which("systemd-sysusers")
# Fixed log settings so that warnings are printed whatever the caller's environment says.
ANALYZE_ENV = {**os.environ, "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "cat"}

needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian: apt-get install systemd)"
)

def test_the_four_units_are_there():
    assert [unit.name for unit in UNITS] == [
        "edgeface-hub.service", "edgeface-netcam@.service", "edgeface.service", "edgeface@.service"
    ]  # fmt: skip


# -- parsing the unit files (enough of the format for these checks) -------------------------------


def directives(unit: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment in `unit`, in order; comments skipped."""
    found, section = [], ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def values(unit: Path, key: str) -> list[str]:
    return [value for _, name, value in directives(unit) if name == key]


def edgeface_command() -> Path:
    """The `edgeface` installed next to the Python running the tests (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "edgeface"
    if beside.is_file():
        return beside
    found = shutil.which("edgeface")
    if found is None:
        pytest.skip("no installed `edgeface` command to point ExecStart at (pip install -e .)")
    return Path(found)


def instance_name(unit: Path) -> str:
    """`edgeface@.service` -> `edgeface@test.service`; other names unchanged."""
    return unit.name.replace("@.", "@test.")


def installed_copy(unit: Path, directory: Path, text: str | None = None) -> Path:
    """`unit` (or `text`) written to `directory`, as an instance for a template, with ExecStart's
    /opt/edgeface/bin/edgeface replaced by the installed command so that verify finds it."""
    text = unit.read_text() if text is None else text
    text = text.replace(f"ExecStart={INSTALLED_COMMAND} ", f"ExecStart={edgeface_command()} ")
    copy = directory / instance_name(unit)
    copy.write_text(text)
    return copy


def verify(path: Path) -> tuple[int, list[str], str]:
    """Exit code of `systemd-analyze verify`, the output lines naming `path` or a drop-in of it, and the whole
    output."""
    done = subprocess.run(
        [ANALYZE, "verify", "--recursive-errors=no", "--man=no", str(path)],
        capture_output=True, text=True, timeout=120, env=ANALYZE_ENV,
    )
    output = done.stdout + done.stderr
    ours = [line for line in output.splitlines() if path.name in line or ".service.d/" in line]  # or its drop-ins
    return done.returncode, ours, output


# -- the units ------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", WATCH_UNITS, ids=lambda unit: unit.name)
def test_unit_runs_the_installed_command_with_its_config(unit):
    config = "%i.toml" if "@" in unit.name else "edgeface.toml"
    assert values(unit, "ExecStart") == [f"{INSTALLED_COMMAND} watch --config /etc/edgeface/{config}"]


def test_hub_unit_runs_the_installed_hub_into_its_own_log_in_the_state_directory():
    """fleet.db, not the default edgeface.db that a box on the same machine writes; flags the hub's parser takes."""
    (command,) = values(HUB, "ExecStart")
    assert command == f"{INSTALLED_COMMAND} hub --config /etc/edgeface/hub.toml --db /var/lib/edgeface/fleet.db"
    args = build_parser().parse_args(command.split()[1:])
    assert (args.command, args.config) == ("hub", Path("/etc/edgeface/hub.toml"))
    assert args.db.parent == Path("/var/lib") / values(HUB, "StateDirectory")[0]


# What each kind of unit has beyond what every unit has: a watch daemon reloads on SIGHUP; the hub has no
# ExecReload= (it reads its config once, and SIGHUP would end it), no devices, and its own memory limit.
OWN = {"watch": {"MemoryMax": "300M", "ExecReload": "/bin/kill -HUP $MAINPID"},
       "hub": {"MemoryMax": "200M", "ExecReload": None, "PrivateDevices": "yes", "ProtectClock": "yes"}}  # fmt: skip


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_has_what_the_issue_asks_for(unit):
    have = {key: value for _, key, value in directives(unit)}
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30s", "Restart": "on-failure",
        "RestartPreventExitStatus": "2", "User": "edgeface", "StateDirectory": "edgeface", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes", "SystemCallErrorNumber": "EPERM",
        "KillSignal": "SIGTERM", **OWN["hub" if unit == HUB else "watch"],
    }
    assert {key: have.get(key) for key in expected} == expected
    assert "AF_UNIX" in have["RestrictAddressFamilies"].split()
    assert values(unit, "SystemCallFilter")[0] == "@system-service"
    assert "TimeoutStopSec" in have
    assert values(unit, "WantedBy") == ["multi-user.target"]


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_passes_systemd_analyze_verify(unit, tmp_path):
    code, ours, output = verify(installed_copy(unit, tmp_path))
    assert code == 0 and not ours, f"systemd-analyze verify (exit {code}) said:\n{output}"


# Each breaks a good unit in a way verify must notice: the check above would catch these mistakes.
BREAKAGES = {
    "misspelt directive": ("ProtectSystem=strict", "ProtectSystm=strict", "Unknown key"),
    "bad value": ("MemoryMax=300M", "MemoryMax=300Q", "Invalid memory limit"),
    "unknown address family": ("AddressFamilies=AF_UNIX\n", "AddressFamilies=AF_UNX\n", "address family"),
    "missing binary": ("ExecReload=/bin/kill", "ExecReload=/bin/no-such-kill", "not executable"),
}


@needs_analyze
@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_verify_catches_a_broken_unit(breakage, tmp_path):
    good, bad, message = BREAKAGES[breakage]
    unit = SYSTEMD / "edgeface.service"
    assert good in unit.read_text()
    code, ours, output = verify(installed_copy(unit, tmp_path, unit.read_text().replace(good, bad, 1)))
    assert code != 0 or ours, f"verify did not notice the {breakage}:\n{output}"
    assert any(message in line for line in ours), output


def exposure(path: Path) -> float:
    """The overall exposure `systemd-analyze security --offline=true` gives the unit file `path`."""
    help_text = subprocess.run([ANALYZE, "--help"], capture_output=True, text=True, env=ANALYZE_ENV).stdout
    if "--offline" not in help_text:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd < 250)")
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True, text=True, timeout=120, env=ANALYZE_ENV,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert found, f"no overall exposure in the output (exit {done.returncode}):\n{done.stdout}{done.stderr}"
    return float(found.group(1))


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_exposure_is_low(unit, tmp_path):
    score = exposure(installed_copy(unit, tmp_path))
    assert score <= MAX_EXPOSURE, f"{unit.name}: exposure {score} (run benchmarks/unit_security.py for the items)"


@needs_analyze
def test_exposure_check_fails_an_unhardened_unit(tmp_path):
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nType=notify\nUser=edgeface\nExecStart={edgeface_command()} watch\n")
    assert exposure(bare) > MAX_EXPOSURE


def test_template_and_plain_unit_are_the_same_sandbox():
    """edgeface@.service is edgeface.service with a per-instance config: nothing else may drift."""
    plain, template = SYSTEMD / "edgeface.service", SYSTEMD / "edgeface@.service"
    ignore = {"ExecStart", "Description"}
    assert [d for d in directives(plain) if d[1] not in ignore] == [
        d for d in directives(template) if d[1] not in ignore
    ]


def test_network_camera_unit_differs_only_in_network_and_devices():
    local, network = SYSTEMD / "edgeface@.service", SYSTEMD / "edgeface-netcam@.service"
    may_differ = {
        "Description", "RequiresMountsFor", "Wants", "After", "SupplementaryGroups", "ReadWritePaths",
        "DevicePolicy", "DeviceAllow", "PrivateDevices", "PrivateNetwork", "RestrictAddressFamilies",
        "IPAddressAllow", "PrivateUsers",
    }
    assert [d for d in directives(local) if d[1] not in may_differ] == [
        d for d in directives(network) if d[1] not in may_differ
    ]
    assert values(local, "PrivateNetwork") == ["yes"] and values(network, "PrivateNetwork") == []
    assert values(network, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    assert values(local, "RestrictAddressFamilies") == ["AF_UNIX"]


def test_hub_unit_is_the_network_camera_sandbox_but_for_what_a_hub_needs():
    """The hub reaches the same LAN ranges with the same sandbox; it differs in its command, in needing no reload
    and no clock-status read (so ProtectClock=yes, and no adjtimex in the filter), and in its memory limit."""
    network = SYSTEMD / "edgeface-netcam@.service"
    may_differ = {"Description", "ExecStart", "ExecReload", "ProtectClock", "SystemCallFilter", "MemoryMax"}
    assert [d for d in directives(network) if d[1] not in may_differ] == [
        d for d in directives(HUB) if d[1] not in may_differ
    ]
    assert values(HUB, "SystemCallFilter") == [
        rule for rule in values(network, "SystemCallFilter") if "adjtimex" not in rule
    ]  # fmt: skip
    assert values(HUB, "IPAddressDeny") == ["any"]
    assert values(HUB, "IPAddressAllow") == values(DROP_IN, "IPAddressAllow")  # the LAN a box's MQTT reaches
    # Not the drop-in's SocketBindDeny=any: paho-mqtt's loop_start() binds 127.0.0.1 port 0 for its wake-up pair.
    assert values(HUB, "SocketBindDeny") == []


# -- the MQTT drop-in: the local units with the network a broker needs -----------------------------------------


DROP_IN = SYSTEMD / "edgeface-mqtt.conf"
LOCAL_UNITS = [SYSTEMD / "edgeface.service", SYSTEMD / "edgeface@.service"]


def with_drop_in(unit: Path, directory: Path, text: str | None = None) -> Path:
    """`installed_copy` of `unit` with the MQTT drop-in (or `text`) as `UNIT.d/mqtt.conf` beside it, where systemd
    finds it as in /etc/systemd/system (a template's `name@.service.d/` applies to every instance); the copy."""
    copy = installed_copy(unit, directory)
    folder = directory / f"{unit.name}.d"
    folder.mkdir()
    (folder / "mqtt.conf").write_text(DROP_IN.read_text() if text is None else text)
    return copy


def test_mqtt_drop_in_changes_only_the_network():
    """It opens IPv4/IPv6 to the LAN ranges of the network camera's unit, and no more: the rest of the sandbox
    (devices, files, system calls) is the local unit's."""
    assert {key for _, key, _ in directives(DROP_IN)} == {"PrivateNetwork", "RestrictAddressFamilies", "IPAddressAllow"}
    assert values(DROP_IN, "PrivateNetwork") == ["no"]
    # No SocketBindDeny=any, as in the hub's unit: paho-mqtt's loop_start() binds 127.0.0.1 port 0 for its wake-up
    # pair, through localhost, which the allow list keeps.
    assert "localhost" in values(DROP_IN, "IPAddressAllow")[0].split()
    assert values(DROP_IN, "RestrictAddressFamilies") == ["", "AF_UNIX AF_INET AF_INET6"]  # replaced, not added to
    assert values(DROP_IN, "IPAddressAllow") == values(SYSTEMD / "edgeface-netcam@.service", "IPAddressAllow")
    for unit in LOCAL_UNITS:
        assert values(unit, "IPAddressDeny") == ["any"]  # kept: only what IPAddressAllow= names gets through


@needs_analyze
@pytest.mark.parametrize("unit", LOCAL_UNITS, ids=lambda unit: unit.name)
def test_unit_with_the_mqtt_drop_in_passes_verify(unit, tmp_path):
    code, ours, output = verify(with_drop_in(unit, tmp_path))
    assert code == 0 and not ours, f"systemd-analyze verify (exit {code}) said:\n{output}"


@needs_analyze
def test_verify_reads_the_drop_in(tmp_path):
    """A misspelt directive in the drop-in is noticed, so the check above looks at the drop-in too."""
    broken = DROP_IN.read_text().replace("PrivateNetwork=", "PrivateNetwerk=")
    code, ours, output = verify(with_drop_in(SYSTEMD / "edgeface@.service", tmp_path, broken))
    assert any("mqtt.conf" in line and "Unknown key" in line for line in ours), output


@needs_analyze
@pytest.mark.parametrize("unit", LOCAL_UNITS, ids=lambda unit: unit.name)
def test_unit_with_the_mqtt_drop_in_has_low_exposure(unit, tmp_path):
    (tmp_path / "alone").mkdir()
    alone, score = exposure(installed_copy(unit, tmp_path / "alone")), exposure(with_drop_in(unit, tmp_path))
    assert alone < score <= MAX_EXPOSURE, f"{unit.name} + mqtt.conf: exposure {score} (alone {alone})"


# -- the sysusers file ----------------------------------------------------------------------------


def test_sysusers_file_declares_the_units_user():
    lines = [line.split() for line in (SYSTEMD / "edgeface.sysusers").read_text().splitlines()]
    entries = [fields for fields in lines if fields and not fields[0].startswith("#")]
    assert [fields[:3] for fields in entries] == [["u", "edgeface", "-"]]
    assert entries[0][-2:] == ["/var/lib/edgeface", "-"]  # home: the units' StateDirectory; shell: nologin
    for unit in UNITS:
        assert values(unit, "User") == ["edgeface"] and values(unit, "Group") == ["edgeface"]


@pytest.mark.skipif(SYSUSERS is None, reason="systemd-sysusers is not installed (Debian: apt-get install systemd)")
@pytest.mark.parametrize("broken", [False, True], ids=["as shipped", "broken copy"])
def test_sysusers_file_parses(tmp_path, broken):
    """A dry run against an empty root: it would create the user and writes nothing."""
    text = (SYSTEMD / "edgeface.sysusers").read_text()
    if broken:
        text = text.replace('"edgeface face', '"edgeface face unterminated').replace('daemon"', "daemon")
    conf = tmp_path / "usr" / "lib" / "sysusers.d" / "edgeface.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(text)
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        [SYSUSERS, "--dry-run", f"--root={tmp_path}"], capture_output=True, text=True, timeout=60, env=ANALYZE_ENV
    )
    output = done.stdout + done.stderr
    complaints = [line for line in output.splitlines() if "edgeface.conf:" in line]
    assert list((tmp_path / "etc").iterdir()) == [], "a dry run wrote files"
    if broken:
        assert complaints, output
    else:
        assert done.returncode == 0 and not complaints, output
        assert "Creating user 'edgeface'" in output, output


# -- the example config ---------------------------------------------------------------------------


def example_config() -> dict[str, object]:
    """The example's live settings, checked by the daemon's own loader."""
    return read_file(SYSTEMD / "edgeface.toml")


def documented_keys() -> list[str]:
    """Every key the example shows, set (`key = …`) or commented out (`# key = …`), dotted by table."""
    keys, table = [], ""
    for line in (SYSTEMD / "edgeface.toml").read_text().splitlines():
        header = re.match(r"^\[([a-z_]+)\]", line)
        if header:
            table = header.group(1) + "."
        key = re.match(r"^(?:# )?([a-z_]+) = ", line)
        if key:
            keys.append(table + key.group(1))
    return keys


def test_example_config_shows_exactly_the_daemons_keys_in_order():
    assert documented_keys() == list(KEYS)
    assert set(example_config()) <= set(KEYS)


def test_example_config_watches_one_source():
    config = example_config()
    assert bool(config["folder.path"]) != bool(config["camera.source"])  # a folder or a camera, not both


def test_example_config_documents_every_key():
    """Each key line follows a comment line that explains it."""
    lines = (SYSTEMD / "edgeface.toml").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            assert lines[number - 1].startswith("#"), f"no comment above: {line}"


def test_example_config_folders_are_writable_by_the_units():
    """The folders the example watches and moves to lie under the units' ReadWritePaths=."""
    config = example_config()
    writable = [path.lstrip("-") for path in values(SYSTEMD / "edgeface.service", "ReadWritePaths")]
    for key in ("folder.path", "folder.move_done", "folder.move_failed"):
        assert any(Path(str(config[key])).is_relative_to(root) for root in writable), key
    assert str(config["model"]).startswith("/var/lib/edgeface/")  # the StateDirectory, readable by the units
