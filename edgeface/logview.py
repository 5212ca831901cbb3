"""`edgeface log`: reading the SQLite log back as a table, JSON lines or CSV."""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import TextIO

from edgeface.clock import log_time
from edgeface.escape import printable

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> str:
    """A UTC ISO 8601 string, as the log stores times, from what a person types.

    Accepts "30m", "6h", "2d" or "1w" (that long ago), a date ("2026-11-28": its local midnight), or
    an ISO date and time (local time unless it names an offset). ValueError otherwise.
    """
    now = now or datetime.now(timezone.utc)
    relative = _RELATIVE.match(text.strip())
    if relative:
        when = now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a time: use e.g. 2026-11-28, '2026-11-28 14:30', 6h or 2d") from None
        if when.tzinfo is None:
            when = when.astimezone()  # a naive time is the box's local time
    return log_time(when)


def write_rows(rows: list[dict], style: str, stream: TextIO | None = None) -> None:
    """`rows` as "json" (one object a line), "csv" (with a header) or "table" (aligned columns), to `stream`, by
    default the sys.stdout of the moment: one bound when this module was imported would miss a redirection."""
    stream = stream or sys.stdout
    if style == "json":
        for row in rows:
            stream.write(json.dumps(row) + "\n")
        return
    if not rows:
        if style == "table":
            stream.write("nothing in the log matches\n")
        return
    columns = list(rows[0])
    if style == "csv":
        writer = csv.DictWriter(stream, fieldnames=columns)  # CRLF rows: a CR or LF inside a value gets quoted
        writer.writeheader()
        writer.writerows(rows)
        return
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    for line in [columns, *cells]:
        stream.write("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip() + "\n")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return printable(str(value))
