"""Time on a box with no battery-backed clock that may be offline.

A Raspberry Pi has no RTC: after boot its wall clock can be far off until NTP syncs, and then it jumps.
So each log row records a `Moment`: the wall clock, the monotonic clock (steady, but meaningful only
within one boot), the boot id that says which boot that was, and whether the kernel called the clock
synchronised. `wall_clock_trustworthy` is the guard that keeps a clock jump from deleting the log.
"""

from __future__ import annotations

import ctypes
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
TIME_ERROR = 5  # adjtimex(2) result: the clock is not synchronised
STA_UNSYNC = 0x0040  # `status` bit: the clock is not synchronised
SPARE_BYTES = 256  # room past the end of `struct timex`, so a layout slip cannot let the kernel overflow it


@functools.cache
def boot_id() -> str:
    """This boot's random id from the kernel (a UUID), or "" where it cannot be read (not Linux)."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as file:
            return file.read().strip()
    except (OSError, ValueError):
        return ""


class _Timeval(ctypes.Structure):
    """C `struct timeval`: seconds and microseconds, each a C long in the ABI the plain `adjtimex` symbol uses."""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """glibc's `struct timex` (sys/timex.h): 208 bytes on 64-bit Linux, then spare room. ctypes pads as C does."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int32 * 11),
        ("spare", ctypes.c_char * SPARE_BYTES),
    ]


@functools.cache
def _adjtimex() -> Callable[..., int] | None:
    """libc's `ntp_adjtime` (or `adjtimex`), looked up once; None where libc has neither (not Linux).

    Only the function is cached: the clock's state is read afresh on every call.
    """
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # TypeError: Windows cannot open "no library"
        return None
    for name in ("ntp_adjtime", "adjtimex"):
        function = getattr(libc, name, None)
        if function is not None:
            function.argtypes = [ctypes.POINTER(_Timex)]
            function.restype = ctypes.c_int
            return function
    return None


def clock_synchronized() -> bool | None:
    """Whether the kernel considers the wall clock synchronised (to NTP, say); None if it cannot be asked.

    A read-only adjtimex(2) (modes 0): unsynchronised when it returns TIME_ERROR or `status` has STA_UNSYNC.
    The call fails, giving None, outside Linux and under seccomp filters such as systemd's ProtectClock=yes.
    """
    function = _adjtimex()
    if function is None:
        return None
    timex = _Timex()  # zeroed by ctypes: modes 0 reads the state and changes nothing
    state = function(ctypes.byref(timex))
    if state < 0:
        return None
    return state != TIME_ERROR and not timex.status & STA_UNSYNC


def log_time(when: datetime) -> str:
    """`when` as the log writes every time: UTC, ISO 8601 with milliseconds (2024-05-01T12:00:00.123+00:00).
    One fixed width and one offset, so the log's times sort and compare as text."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Moment:
    """One instant as the log records it; `monotonic` only compares with moments of the same `boot_id`."""

    wall: str  # as `log_time` writes it
    monotonic: float  # time.monotonic(): seconds since an arbitrary point of this boot, never jumps
    boot_id: str
    synced: bool | None  # clock_synchronized() at this moment

    def wall_at(self, monotonic: float) -> str:
        """The wall-clock time (as `log_time` writes it) of an earlier `time.monotonic()` reading of this boot:
        measured back from this moment, so a clock jump in between cannot make a span negative."""
        return log_time(datetime.fromisoformat(self.wall) - timedelta(seconds=self.monotonic - monotonic))


def now() -> Moment:
    """The current moment."""
    return Moment(
        wall=log_time(datetime.now(timezone.utc)),
        monotonic=time.monotonic(),
        boot_id=boot_id(),
        synced=clock_synchronized(),
    )


def wall_clock_trustworthy(newest_recorded_wall: str | None, moment: Moment) -> bool:
    """Whether `moment.wall` may be used to age out old log rows (retention deletes by wall-clock age).

    False when the kernel says the clock is unsynchronised (freshly booted, maybe years off), or when the clock
    reads earlier than the newest time already recorded, i.e. it went back. Otherwise True, including when
    synchronisation is unknown (None) and when nothing is recorded yet. Times are ISO 8601 with a UTC offset,
    as `Moment.wall`; a recorded time that cannot be compared gives False, since deleting is the risky choice.
    """
    if moment.synced is False:
        return False
    if newest_recorded_wall is None:
        return True
    try:
        return datetime.fromisoformat(moment.wall) >= datetime.fromisoformat(newest_recorded_wall)
    except (ValueError, TypeError):  # unparseable, or a time without offset that cannot be compared
        return False
