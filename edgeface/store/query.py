"""Where the log lives by default, and the filters that `edgeface log` and `forget` put on it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

def default_path() -> Path:
    """Where the log lives unless `--db` says otherwise.

    $EDGEFACE_DB, else systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/edgeface (~/.local/state/edgeface).
    """
    if os.environ.get("EDGEFACE_DB"):
        return Path(os.environ["EDGEFACE_DB"])
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0]) / "edgeface.db"
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "edgeface" / "edgeface.db"


@dataclass(frozen=True)
class LogQuery:
    """Filters for `recent` and `summary`; times are UTC ISO 8601 strings, compared as text."""

    since: str | None = None
    until: str | None = None
    label: str | None = None
    unknown: bool | None = None
    rejected: bool | None = None  # turned away by the quality gate (True), or not (False)
    source: str | None = None
    device: str | None = None  # the box a hub heard the rows from (`edgeface hub`)
    limit: int = 50

    def conditions(self, time: str = "i.processed_at", face: str = "f", source: str = "i") -> tuple[str, list]:
        """A WHERE clause with ? placeholders, and its parameters (never values in the SQL text).

        `time`, `face` and `source` name the column and table aliases the filters apply to, so
        the same filters work on inputs with their faces and on appearances (`device` is a column of `source`'s).
        """
        clauses, params = ["1"], []
        # A label names the faces accepted as that person; their rejected look-alikes (the label was only the
        # nearest guess) only when `unknown` asks for them. A face accepted as someone passed the quality gate.
        unknown = False if self.unknown is None and self.label is not None else self.unknown
        rejected = False if unknown is False and self.rejected is None else self.rejected
        for clause, value in (
            (f"{time} >= ?", self.since),
            (f"{time} < ?", self.until),
            (f"{face}.label = ?", self.label),
            (f"{face}.unknown = ?", None if unknown is None else int(unknown)),
            (f"({face}.rejected IS NOT NULL) = ?", None if rejected is None else int(rejected)),
            (f"{source}.device = ?", self.device),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if self.source is not None:  # "folder" means every folder:…, "camera" every camera:…
            clauses.append(f"({source}.source = ? OR substr({source}.source, 1, ?) = ?)")
            params += [self.source, len(self.source) + 1, f"{self.source}:"]
        return " AND ".join(clauses), params
