"""The systemd notify protocol, written directly: one datagram of `KEY=VALUE` lines to `$NOTIFY_SOCKET`.

No libsystemd: the protocol is a single AF_UNIX datagram (sd_notify(3)), so the standard library suffices.
The daemon also runs outside systemd, where `$NOTIFY_SOCKET` is unset and every call here is a cheap no-op.
A notification must never take the daemon down: a failed send is logged once and the daemon carries on.
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger(__name__)

# A send blocks while systemd's receive queue is full; this bounds how long a stuck manager can hold us up, once:
# after a send that timed out, sends do not wait until one goes through again.
SEND_TIMEOUT_SECONDS = 1.0


def _socket_address(path: str) -> str:
    """The AF_UNIX address for a `$NOTIFY_SOCKET` value: a leading "@" means the Linux abstract namespace."""
    return "\0" + path[1:] if path.startswith("@") else path


def _one_line(value: object) -> str:
    """`value` as text without newlines, which would otherwise start a new (forged) field."""
    return str(value).replace("\r", " ").replace("\n", " ")


def _encode(fields: dict[str, object]) -> bytes:
    """The datagram for `fields`: one `KEY=VALUE` line per field, each ending in a newline, UTF-8."""
    return "".join(f"{key}={_one_line(value)}\n" for key, value in fields.items()).encode()


def _monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _connect(path: str) -> socket.socket:
    """A datagram socket connected to the notify socket at `path`; raises OSError if nothing listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.settimeout(SEND_TIMEOUT_SECONDS)
        sock.connect(_socket_address(path))
    except OSError:
        sock.close()
        raise
    return sock


class SystemdNotifier:
    """Tells systemd about the daemon's state: ready, alive (watchdog), status text, reloading, stopping.

    Connects once, at construction, to `socket_path` or else `$NOTIFY_SOCKET`. Without a socket, or when it
    cannot be reached, the notifier is disabled and every method returns False without doing anything.
    Methods return whether the datagram went out; callers may ignore that.
    """

    def __init__(self, socket_path: str | None = None) -> None:
        self._path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        self._warned = False
        self._queue_full = False  # the last send found the manager's queue full: do not wait for room again
        self._sock: socket.socket | None = None
        if self._path:
            try:
                self._sock = _connect(self._path)
            except OSError as error:
                self._warn(error)

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given and connected: False outside systemd."""
        return self._sock is not None

    def send(self, **fields: object) -> bool:
        """Sends `fields` (e.g. `READY=1`) as one datagram; False when disabled or the send failed."""
        if self._sock is None or not fields:
            return False
        try:
            self._sock.send(_encode(fields))
        except (TimeoutError, BlockingIOError) as error:  # the manager is not reading: drop it rather than stall
            self._full_queue(True)
            self._warn(error)
            return False
        except OSError as error:
            self._warn(error)
            return False
        self._full_queue(False)
        return True

    def _full_queue(self, full: bool) -> None:
        """While the manager's queue is full, sends do not wait for room (a timeout of 0); once one goes through,
        they wait SEND_TIMEOUT_SECONDS again."""
        if full != self._queue_full and self._sock is not None:
            self._sock.settimeout(0 if full else SEND_TIMEOUT_SECONDS)
            self._queue_full = full

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete; for Type=notify, systemd holds the unit in "activating" until this."""
        if status is None:
            return self.send(READY=1)
        return self.send(READY=1, STATUS=status)

    def watchdog(self) -> bool:
        """The keep-alive ping: without one within WatchdogSec=, systemd deems the daemon hung and kills it."""
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """A one-line status that `systemctl status` shows."""
        return self.send(STATUS=text)

    def stopping(self) -> bool:
        """The daemon has begun shutting down."""
        return self.send(STOPPING=1)

    def reloading(self) -> bool:
        """A reload has begun; send `ready()` when it is done.

        Carries MONOTONIC_USEC, which Type=notify-reload requires from systemd 253 on and older systemd ignores.
        """
        return self.send(RELOADING=1, MONOTONIC_USEC=_monotonic_usec())

    def close(self) -> None:
        """Closes the socket; the notifier is disabled from then on."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _warn(self, error: OSError) -> None:
        """Logs the first failure at warning, later ones at debug: a lost socket must not flood the log."""
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        logger.log(level, "systemd notify socket %s: %s (carrying on; later failures log at debug)", self._path, error)


def watchdog_interval() -> float | None:
    """Seconds within which systemd expects each WATCHDOG=1 ping, or None if it expects none from this process.

    As sd_watchdog_enabled(3): `$WATCHDOG_USEC` applies when `$WATCHDOG_PID` is unset or names this process
    (a child that inherited the environment must not ping). systemd recommends pinging at half the interval.
    """
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
        pid = int(os.environ.get("WATCHDOG_PID") or os.getpid())
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 1_000_000
