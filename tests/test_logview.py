"""Times people type for `edgeface log`, and the three output styles."""

import contextlib
import csv
import io
import logging
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.escape import OneLinePerRecord
from edgeface.logview import parse_time, write_rows
from edgeface.store import ResultLog
from helpers import Classifier

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30m", "2026-11-28T11:30:00.000+00:00"),
        ("6h", "2026-11-28T06:00:00.000+00:00"),
        ("2d", "2026-11-26T12:00:00.000+00:00"),
        ("1w", "2026-11-21T12:00:00.000+00:00"),
        ("2026-11-28T10:00:00+02:00", "2026-11-28T08:00:00.000+00:00"),
    ],
)
def test_relative_and_absolute_times(text, expected):
    assert parse_time(text, now=NOW) == expected


def test_a_naive_time_is_local(monkeypatch):
    local = datetime(2026, 11, 28, 9, 30).astimezone()
    assert parse_time("2026-11-28 09:30") == local.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def test_nonsense_is_refused():
    with pytest.raises(ValueError, match="not a time"):
        parse_time("soon")


def test_table_csv_and_json():
    rows = [{"label": "alice", "confidence": 0.91234, "error": None}, {"label": "bob", "confidence": 0.5, "error": "x"}]
    for style, expected in (
        ("csv", "label,confidence,error\r\nalice,0.91234,\r\nbob,0.5,x\r\n"),
        ("json", '{"label": "alice", "confidence": 0.91234, "error": null}\n{"label": "bob", "confidence": 0.5, "error": "x"}\n'),
        ("table", "label  confidence  error\nalice  0.912\nbob    0.500       x\n"),
    ):
        out = io.StringIO()
        write_rows(rows, style, out)
        assert out.getvalue() == expected


def test_what_another_program_or_a_file_name_holds_cannot_forge_a_row_or_reach_the_terminal():
    hostile = {"path": "/in/a.jpg\n2026-01-01  scan  /in/forged.jpg  done", "label": "eve\x1b[2J", "note": "cr\ronly"}
    table = io.StringIO()
    write_rows([hostile], "table", table)
    assert len(table.getvalue().splitlines()) == 2 and "\x1b" not in table.getvalue() and "\\x1b[2J" in table.getvalue()
    spreadsheet = io.StringIO()
    write_rows([hostile], "csv", spreadsheet)
    assert list(csv.DictReader(io.StringIO(spreadsheet.getvalue()))) == [hostile]  # quoted, so read back whole
    assert '"cr\ronly"' in spreadsheet.getvalue()


def test_every_journal_line_is_one_line_whatever_it_quotes(caplog: pytest.LogCaptureFixture):
    record = logging.LogRecord("edgeface.watch", logging.ERROR, __file__, 1, "cannot move %s: %s", ("a\nb.jpg", "\x1b]0;x"), None)
    assert OneLinePerRecord().filter(record)
    assert record.getMessage() == "cannot move a\\nb.jpg: \\x1b]0;x"


HOSTILE_NAME = "eve\n2026-01-01  mallory  x\x1b[2J"


def crafted_log(path: Path) -> Path:
    """A log whose enrolment names a person as no edgeface would (another program, or a hand, wrote it)."""
    ResultLog(path).close()
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("INSERT INTO enrolments (person, network, embedding, origin, enrolled_at) VALUES "
                           "(?, 'ab', x'00', 'photo', '2026-01-01')", (HOSTILE_NAME,))  # fmt: skip
    return path


def test_people_escapes_what_a_crafted_log_holds(tmp_path: Path, capsys: pytest.CaptureFixture):
    db = crafted_log(tmp_path / "log.db")
    assert main(["people", "--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert len(table.splitlines()) == 2 and "\x1b" not in table and "eve\\n2026" in table, table
    assert main(["people", "--db", str(db), "--csv"]) == 0
    [row] = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["person"] == HOSTILE_NAME  # quoted, so read back whole


def test_info_escapes_the_model_file_name(classifier: Classifier, tmp_path: Path, capsys: pytest.CaptureFixture):
    model = tmp_path / "faces\n\x1b[31m.tflite"
    shutil.copy(classifier.tflite_file, model)
    assert main(["info", str(model)]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "faces\\n\\x1b[31m.tflite" in shown, shown
