"""Text from inputs (file names, labels from a model, another program's rows) made safe to print.

A file name can hold a newline, which would forge a line of output, or an escape sequence, which a
terminal would obey. Everything edgeface prints for people goes through `printable`, and every
journal line through `OneLinePerRecord`.
"""

from __future__ import annotations

import logging


def printable(text: str) -> str:
    """`text` with control characters (a newline in a file name) escaped, so one path is one line
    and cannot pass for another line of output."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class OneLinePerRecord(logging.Filter):
    """Escapes each record's message (its arguments filled in) before any handler formats it, so a log line
    cannot be split or forged by what it quotes. A traceback, formatted apart, keeps its own lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = printable(message)
        if escaped != message:
            record.msg, record.args = escaped, ()
        return True
