"""What can go wrong with the log, in the store's own words.

Every SQLite and file-system error met by `ResultLog` leaves it as one of these types, so callers
decide by type (wait, or stop and tell a person) and never look at SQLite's error codes. `reason`
is the cause in SQLite's or the file system's words; `str(error)` is the whole sentence for a person.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path


class LogError(RuntimeError):
    """The log cannot be used now. `lasting`: no wait mends it, a person must act."""

    lasting = False
    summary = "cannot be used"

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"the log {self.path} {self.summary}: {reason}")


class LogBusy(LogError):
    """Another program holds the log's write lock longer than this one waits."""

    summary = "is locked by another program"


class LogReadOnly(LogError):
    """This process may not write the log (permissions, a read-only mount)."""

    summary = "cannot be written here"


class LogFull(LogError):
    """The disk under the log has no room for the write."""

    summary = "cannot grow: the disk is full"


class LogGone(LogError):
    """The log or its folder cannot be reached: deleted, replaced, moved, or an I/O error."""

    summary = "cannot be reached"


class LogDamaged(LogError):
    """The file is damaged, is no edgeface log, or comes from a newer edgeface: a person must restore,
    move or upgrade it."""

    lasting = True
    summary = "cannot be used"


# SQLite's primary result codes (the first two words of `sqlite_errorname`) by the type they become.
_BY_SQLITE_CODE: dict[str, type[LogError]] = {
    "SQLITE_BUSY": LogBusy,
    "SQLITE_LOCKED": LogBusy,
    "SQLITE_READONLY": LogReadOnly,
    "SQLITE_FULL": LogFull,
    "SQLITE_IOERR": LogGone,
    "SQLITE_CANTOPEN": LogGone,
    "SQLITE_CORRUPT": LogDamaged,
    "SQLITE_NOTADB": LogDamaged,
    "SQLITE_SCHEMA": LogDamaged,
}
_BY_ERRNO: dict[int, type[LogError]] = {
    errno.ENOSPC: LogFull,
    errno.EDQUOT: LogFull,
    errno.EROFS: LogReadOnly,
    errno.EACCES: LogReadOnly,
    errno.EPERM: LogReadOnly,
}


def as_log_error(error: Exception, path: Path) -> LogError:
    """`error`, met while using the log at `path`, as the store's own type."""
    if isinstance(error, LogError):
        return error
    if isinstance(error, sqlite3.Error):
        name = str(getattr(error, "sqlite_errorname", "") or "")
        if name == "SQLITE_READONLY_DBMOVED":  # the file was deleted or renamed under the connection
            return LogGone(path, str(error))
        kind = _BY_SQLITE_CODE.get("_".join(name.split("_")[:2]), LogError)
        reason = str(error) + (_read_only_files(path) if kind is LogReadOnly else "")
        return kind(path, reason)
    if isinstance(error, OSError):
        return _BY_ERRNO.get(error.errno, LogGone)(path, error.strerror or str(error))
    raise TypeError(f"not a log error: {error!r}")


def _read_only_files(db: Path) -> str:
    """Which of the log's files this process may not write, said after SQLite's words (SQLite gives its -wal
    and -shm files the log's permissions, so any of the three can be the one refused)."""
    files = (db, Path(f"{db}-wal"), Path(f"{db}-shm"))
    read_only = [path.name for path in files if path.exists() and not os.access(path, os.W_OK)]
    return f" (read-only here: {', '.join(read_only)})" if read_only else ""
