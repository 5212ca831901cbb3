"""The SQLite log, edgeface's one source of truth: what goes in, how to ask it, and what can go wrong.

Only this package talks to SQLite; callers use `ResultLog` (`FleetLog` for the hub), `LogQuery` and the `LogError` types.
"""

from edgeface.store.errors import LogBusy, LogDamaged, LogError, LogFull, LogGone, LogReadOnly
from edgeface.store.fleet_log import FleetLog, Kept
from edgeface.store.query import LogQuery, default_path
from edgeface.store.result_log import ResultLog

__all__ = ["FleetLog", "Kept", "LogBusy", "LogDamaged", "LogError", "LogFull", "LogGone", "LogQuery", "LogReadOnly",
           "ResultLog", "default_path"]
