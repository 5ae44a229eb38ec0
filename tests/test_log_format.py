"""``node.log_format = "json"``: one JSON object per log line, tracebacks included."""

from __future__ import annotations

import json
import logging
import sys

from meridian.cli import JsonLogFormatter


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("broken")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("meridian.drain", logging.WARNING, __file__, 1, message, args, info)


def test_a_json_log_line_holds_time_level_node_logger_and_message() -> None:
    line = JsonLogFormatter("eu-1").format(record('drain: %d player(s), "quoted"\nnext', 3))
    assert "\n" not in line  # one record, one line, whatever the message holds
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["node"] == "eu-1"
    assert entry["logger"] == "meridian.drain"
    assert entry["message"] == 'drain: 3 player(s), "quoted"\nnext'
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert "exception" not in entry


def test_a_json_log_line_carries_the_traceback() -> None:
    entry = json.loads(JsonLogFormatter("eu-1").format(record("failed", exc=True)))
    assert "ValueError: broken" in entry["exception"]
