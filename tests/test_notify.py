"""The systemd notify protocol against real AF_UNIX datagram sockets, standing in for systemd's."""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeface.notify import SystemdNotifier, watchdog_interval

REPO = Path(__file__).resolve().parent.parent
# The smallest daemon: says its pid, then READY=1 to whatever $NOTIFY_SOCKET names.
DAEMON = (
    "import os; from edgeface.notify import SystemdNotifier; "
    "print(os.getpid()); raise SystemExit(0 if SystemdNotifier().ready() else 1)"
)


def listening(address: str) -> socket.socket:
    """A datagram socket bound at `address`, as systemd binds its notify socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)  # only a safety net: every datagram is already queued when send() returns
    return sock


def nothing_waiting(sock: socket.socket) -> bool:
    """True when no datagram is queued on `sock` (sends are synchronous, so none is on its way)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


@pytest.fixture()
def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "notify")  # short: AF_UNIX paths are limited to 107 bytes


@pytest.fixture()
def receiver(socket_path: str) -> Iterator[socket.socket]:
    sock = listening(socket_path)
    yield sock
    sock.close()


@pytest.fixture()
def notifier(socket_path: str, receiver: socket.socket) -> Iterator[SystemdNotifier]:
    notifier = SystemdNotifier(socket_path)
    yield notifier
    notifier.close()


def test_ready_to_a_socket_path_given_as_argument(notifier: SystemdNotifier, receiver: socket.socket) -> None:
    assert notifier.enabled
    assert notifier.ready()
    assert receiver.recv(4096) == b"READY=1\n"


def test_socket_from_the_environment_and_each_message(
    socket_path: str, receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", socket_path)
    notifier = SystemdNotifier()
    try:
        assert notifier.ready("watching /photos")
        assert notifier.watchdog()
        assert notifier.status("3 files waiting")
        assert notifier.stopping()
    finally:
        notifier.close()
    assert [receiver.recv(4096) for _ in range(4)] == [
        b"READY=1\nSTATUS=watching /photos\n",
        b"WATCHDOG=1\n",
        b"STATUS=3 files waiting\n",
        b"STOPPING=1\n",
    ]
    assert nothing_waiting(receiver)


def test_reloading_carries_the_monotonic_time_in_microseconds(
    notifier: SystemdNotifier, receiver: socket.socket
) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic, end = receiver.recv(4096).decode().split("\n")
    assert (reloading, end) == ("RELOADING=1", "")
    key, value = monotonic.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_generic_send_keeps_field_order_and_keeps_values_on_one_line(
    notifier: SystemdNotifier, receiver: socket.socket
) -> None:
    assert notifier.send(STATUS="disk full\nREADY=1", ERRNO=28)
    assert receiver.recv(4096) == b"STATUS=disk full READY=1\nERRNO=28\n"
    assert not notifier.send()
    assert nothing_waiting(receiver)


def test_abstract_namespace_socket() -> None:
    name = f"edgeface-test-{uuid.uuid4().hex}"
    receiver = listening("\0" + name)
    notifier = SystemdNotifier("@" + name)
    try:
        assert notifier.enabled
        assert notifier.ready()
        assert receiver.recv(4096) == b"READY=1\n"
    finally:
        notifier.close()
        receiver.close()


@pytest.mark.parametrize("environment", [None, ""])
def test_without_a_socket_every_call_is_a_no_op(environment: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if environment is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", environment)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    results = [notifier.ready(), notifier.ready("up"), notifier.watchdog(), notifier.status("x")]
    results += [notifier.stopping(), notifier.reloading(), notifier.send(READY=1)]
    assert results == [False] * 7


def test_a_socket_that_disappears_is_logged_once_and_never_raises(
    socket_path: str, receiver: socket.socket, notifier: SystemdNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    assert notifier.ready()
    receiver.close()
    os.unlink(socket_path)
    with caplog.at_level(logging.DEBUG, logger="edgeface.notify"):
        results = [notifier.watchdog(), notifier.status("still here"), notifier.watchdog()]
    assert results == [False, False, False]
    assert [record.levelno for record in caplog.records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert socket_path in caplog.records[0].getMessage()


def test_a_manager_that_stops_reading_costs_one_wait_not_one_per_message(
    notifier: SystemdNotifier, receiver: socket.socket
) -> None:
    """A full queue (nobody reads the socket) makes one send wait SEND_TIMEOUT_SECONDS; the ones after it are
    dropped at once, so a daemon sending its status every second is not held up a second each time. Once the
    queue has room, messages go through again."""
    while notifier.send(STATUS="x" * 1000):  # fills the queue; the send that finds it full waits, then fails
        pass
    started = time.monotonic()
    assert not any([notifier.status("still busy") for _ in range(50)])
    assert time.monotonic() - started < 5  # 50 waits of 1 s each would take 50 s
    while not nothing_waiting(receiver):
        receiver.recv(4096)  # the manager catches up
    assert notifier.status("caught up") and receiver.recv(4096) == b"STATUS=caught up\n"


def test_a_socket_missing_at_start_disables_the_notifier(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgeface.notify"):
        notifier = SystemdNotifier(str(tmp_path / "absent"))
        assert not notifier.enabled
        assert not notifier.ready()
    assert len(caplog.records) == 1


def test_a_child_process_started_with_notify_socket_reports_ready(socket_path: str, receiver: socket.socket) -> None:
    """As under systemd: the daemon finds $NOTIFY_SOCKET in its environment, and the kernel tells the
    receiver the sender's pid (SO_PASSCRED), which systemd checks against the unit's main pid."""
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    child = subprocess.run(
        [sys.executable, "-c", DAEMON],
        check=False,
        cwd=REPO,
        env={**os.environ, "NOTIFY_SOCKET": socket_path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    message, ancillary, _, _ = receiver.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("iII")))
    assert message == b"READY=1\n"
    [(level, kind, credentials)] = ancillary
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    pid, _, _ = struct.unpack("iII", credentials)
    assert pid == int(child.stdout)


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "own", 30.0),
        ("2500000", "own", 2.5),
        ("30000000", "other", None),
        (None, None, None),
        (None, "own", None),
        ("0", None, None),
        ("soon", None, None),
        ("30000000", "nobody", None),
    ],
)
def test_watchdog_interval(
    usec: str | None, pid: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        value = {"own": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert watchdog_interval() == expected
