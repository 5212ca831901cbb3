"""Clock facts for the log: boot id, NTP synchronisation via adjtimex(2), moments, and the retention guard."""

from __future__ import annotations

import ctypes
import dataclasses
import re
import sys
import time
import uuid
from datetime import datetime, timedelta

import pytest

from edgeface import clock
from edgeface.clock import Moment, boot_id, clock_synchronized, now, wall_clock_trustworthy

on_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only kernel interface")


@on_linux
def test_boot_id_is_the_kernels_uuid_and_stable() -> None:
    first = boot_id()
    assert str(uuid.UUID(first)) == first
    assert boot_id() == first
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
        assert file.read().strip() == first


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_long) != 8, reason="64-bit Linux layout"
)
def test_struct_timex_matches_glibc_on_64_bit_linux() -> None:
    """Offsets and size of glibc's `struct timex` on x86_64 and aarch64, as gcc reports them."""
    layout = clock._Timex
    offsets = [layout.status.offset, layout.time.offset, layout.tick.offset, layout.shift.offset, layout.tai.offset]
    assert offsets == [40, 72, 88, 112, 160]
    assert layout.spare.offset == 208
    assert ctypes.sizeof(layout) == 208 + clock.SPARE_BYTES


def test_clock_synchronized_answers_without_raising() -> None:
    answers = {clock_synchronized() for _ in range(3)}
    assert answers <= {True, False, None}
    assert len(answers) == 1 or answers == {False, True}  # NTP may sync between calls, nothing else changes


@on_linux
def test_clock_synchronized_can_ask_the_kernel_on_linux() -> None:
    assert clock._adjtimex() is not None


def test_now_records_every_clock() -> None:
    before = time.monotonic()
    moment = now()
    after = time.monotonic()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", moment.wall)
    assert datetime.fromisoformat(moment.wall).utcoffset() == timedelta(0)
    assert before <= moment.monotonic <= after
    assert moment.boot_id == boot_id()
    assert moment.synced in (True, False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        moment.wall = "2000-01-01T00:00:00.000+00:00"  # type: ignore[misc]


NOON = "2024-05-01T12:00:00.000+00:00"


@pytest.mark.parametrize(
    ("synced", "recorded", "trusted"),
    [
        (True, None, True),  # nothing recorded yet
        (True, "2024-05-01T11:59:59.999+00:00", True),  # time moved on
        (True, NOON, True),  # same millisecond
        (True, "2024-05-01T12:00:00.001+00:00", False),  # the clock went back
        (True, "2024-05-01T14:00:00.001+02:00", False),  # went back, recorded in another offset
        (True, "2024-05-01T13:59:59.000+02:00", True),  # moved on, recorded in another offset
        (False, None, False),  # unsynchronised: maybe years off after boot
        (False, "2020-01-01T00:00:00.000+00:00", False),
        (None, "2024-05-01T11:00:00.000+00:00", True),  # unknown sync: rely on the went-back check
        (None, "2031-01-01T00:00:00.000+00:00", False),
        (True, "not a time", False),  # cannot compare: do not delete
        (True, "2024-05-01T11:00:00", False),  # no offset: cannot compare with a UTC time
    ],
)
def test_wall_clock_trustworthy(synced: bool | None, recorded: str | None, trusted: bool) -> None:
    moment = Moment(wall=NOON, monotonic=12.5, boot_id="boot", synced=synced)
    assert wall_clock_trustworthy(recorded, moment) is trusted
