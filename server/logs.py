"""The server's log lines: readable text for a terminal, or one JSON object per line.

`configure_logging` sets up the root logger once per process (`lez-server serve` calls it before
forking, so the workers inherit it). A log call may carry structured fields as
`extra={"fields": {...}}` (the per-call line of `server.calls` does): the JSON format puts them
at the top level of the object, the text format appends them as `key=value`. Field values are
never plates: the callers pass counts, ids and names only.

The JSON formatter is a small class of our own over the standard `logging` module (fields are
flat; a dependency would add nothing here). Each object holds `ts` (UTC, ISO 8601 with
milliseconds), `level`, `logger`, `pid`, `message`, the fields, and `exc` (the traceback text)
when an exception is logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

from server.config import LOG_FORMATS

TEXT_FORMAT: Final = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
_NEEDS_QUOTES: Final = re.compile(r'[\s"=]')
FIELDS_ATTR: Final = "fields"
"""The `extra` key under which a log call passes its structured fields."""


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    found = getattr(record, FIELDS_ATTR, None)
    return found if isinstance(found, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "ts": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            out.setdefault(key, value)  # a field never hides the fixed keys above
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic line, with the record's structured fields appended as `key=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extra = " ".join(f"{k}={_text(v)}" for k, v in fields_of(record).items())
        return f"{line} {extra}" if extra else line


def _text(value: Any) -> str:
    if type(value) is int or type(value) is float:
        return str(value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    text = str(value)
    if not text:
        return "-"
    return json.dumps(text, ensure_ascii=False) if _NEEDS_QUOTES.search(text) else text


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of a `log_format` config value (`text` or `json`)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The root logger writes `log_format` lines at `level` to `stream` (stderr by default),
    replacing whatever handlers it had."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
