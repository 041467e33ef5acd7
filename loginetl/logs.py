"""Where the `loginetl` loggers write: rich lines on a terminal, plain lines in files and pipes,
or one JSON object per line (`--log-format json`) for log shippers.

Every record passes through the same redaction as errors, so no secret reaches a log. The
services log only counts, ids and reasons: never a raw ip or device_id.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from enum import Enum

from rich.console import Console
from rich.logging import RichHandler

from .config import redact

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
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", record.name.rsplit(".", 1)[-1]),
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "event"}
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def configure(level: LogLevel, log_format: LogFormat, console: Console) -> None:
    if log_format is LogFormat.json:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
    elif console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(Redacting())
    logger = logging.getLogger("loginetl")
    logger.handlers[:] = [handler]
    logger.setLevel(level.value.upper())
    logger.propagate = False
