"""Where the `loginetl` loggers write: rich lines on a terminal, plain lines in files and pipes,
or one JSON object per line (`--log-format json`) for log shippers.

Every record passes through the same redaction as errors, so no secret reaches a log. The
services log only counts, ids and reasons: never a raw ip or device_id.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import Enum

from rich.console import Console
from rich.logging import RichHandler

from ..config import redact

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


class JsonLines(logging.Formatter):
    """{"ts", "level", "event", "message", ...extra fields} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", record.name.rsplit(".", 1)[-1]),
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "event"}
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test runner swaps it per invocation)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


_explicit_level = False  # --log-level (or LOGINETL_LOG_LEVEL) was given
_json = False


def configure(level: LogLevel | None, log_format: LogFormat, console: Console) -> None:
    """Where log lines go, at `level`; without one, `info` for JSON logs (a service log shows
    its lifecycle and every batch) and `warning` for people at a terminal."""
    global _explicit_level, _json
    _explicit_level, _json = level is not None, log_format is LogFormat.json
    if level is None:
        level = LogLevel.info if _json else LogLevel.warning
    if _json:
        handler: logging.Handler = CurrentStderr()
        handler.setFormatter(JsonLines())
    elif console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
    else:
        handler = CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(Redacting())
    logger = logging.getLogger("loginetl")
    logger.setLevel(level.value.upper())
    root = logging.getLogger()
    if _json:
        # Every line on stderr is JSON: the warnings of libraries (botocore, urllib3) too.
        logger.handlers[:] = []
        logger.propagate = True
        root.handlers[:] = [handler]
        root.setLevel(logging.WARNING)
    else:
        logger.handlers[:] = [handler]
        logger.propagate = False
        root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, JsonLines)]


def json_lines() -> bool:
    """Whether the process writes JSON lines (`--log-format json`)."""
    return _json


def as_service() -> None:
    """A long-running command (`run --follow`) logs at `info` unless a level was given; so does
    an audited operator action (`erase --yes`, `unmask`), whose event is its audit record."""
    if not _explicit_level:
        logging.getLogger("loginetl").setLevel(logging.INFO)


audited = as_service
