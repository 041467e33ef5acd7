"""How a run tells an outage of one of its ends (the database, the SQS or Kinesis endpoint):
one warning as it begins, naming the end; then, while it lasts, one line every REPORT_EVERY
seconds saying since when and how much longer it is waited for, so a run that cannot reach an
end is never silent for long; and, for the database, one warning as it ends (database.py).

The retries in between stay at debug level: one line an interval, never one a retry.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import botocore.exceptions

from .config import redact
from .errors import ConfigError

log = logging.getLogger(__name__)

REPORT_EVERY = 30.0  # seconds between two "still unavailable" lines about one end
# An internal knob (docs/service.md): the tests shorten the interval rather than wait 30 s.
REPORT_EVERY_ENV = "LOGINETL_OUTAGE_REPORT_EVERY"

# What botocore raises when the endpoint cannot be reached at all (refused, timed out while
# connecting, dropped before answering); an error the endpoint answered with is not an outage.
UNREACHABLE = (botocore.exceptions.ConnectionError, botocore.exceptions.ConnectionClosedError)


def report_every() -> float:
    """The interval: LOGINETL_OUTAGE_REPORT_EVERY seconds when set, else REPORT_EVERY."""
    text = os.environ.get(REPORT_EVERY_ENV, "").strip()
    if not text:
        return REPORT_EVERY
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{REPORT_EVERY_ENV} must be a number of seconds above 0, not {text!r}")
    return seconds


def timestamp(wall: float) -> str:
    """A wall-clock time (time.time()) as ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_said: dict[str, float] = {}  # end -> monotonic time of its last "still" line, any Outage's
_said_lock = threading.Lock()


class Outage:
    """One outage of one end, from its first failure on. `still` says that it goes on, at most
    once every `every` seconds for that end in the whole process: the loader and the leases of
    a stream run each have a connection to one database, and one line an interval is enough."""

    def __init__(self, end: str, every: float) -> None:
        self.end = end
        self.every = every
        self.began = time.monotonic()
        self.since = timestamp(time.time())
        self.next_line = self.began + every

    def lasted(self) -> float:
        return time.monotonic() - self.began

    def due_in(self) -> float:
        """Seconds until the next "still" line is due (0: now)."""
        return max(0.0, self.next_line - time.monotonic())

    def still(self, logger: logging.Logger, message: str, event: str, **fields) -> None:
        """Log `message` as a warning with `fields` (and `since`, `seconds`) if a line is due
        and no other Outage of this end said one less than an interval ago."""
        now = time.monotonic()
        if now < self.next_line:
            return
        self.next_line = now + self.every
        with _said_lock:
            last = _said.get(self.end)
            if last is not None and now - last < self.every:
                return
            _said[self.end] = now
        fields |= {"since": self.since, "seconds": round(now - self.began, 3)}
        logger.warning(message, extra={"event": event, **fields})


@contextmanager
def watching(client, name: str) -> Iterator[None]:
    """While inside: a request of the AWS `client` (`name`: "SQS", "Kinesis") that cannot reach
    its endpoint is said at once in one warning naming the endpoint, though botocore retries it
    silently; while botocore's retries go on, one line an interval; and one line when the
    endpoint answers again. What the call then raises is the caller's, as ever."""
    endpoint = redact(client.meta.endpoint_url)
    total = client.meta.config.retries.get("total_max_attempts", 1)
    fields = {"service": name.lower(), "endpoint": endpoint}
    every = report_every()
    lock = threading.Lock()
    outage: list[Outage] = []  # the one going on, if any

    def needs_retry(caught_exception=None, attempts: int = 1, **kwargs) -> None:  # None: no say
        tries = f"attempt {attempts} of {total} (botocore's retries)"
        with lock:
            if not isinstance(caught_exception, UNREACHABLE):
                if caught_exception is None and outage:
                    seconds = outage.pop().lasted()
                    log.warning(
                        "%s endpoint %s reachable again after %.1f s", name, endpoint, seconds,
                        extra={"event": "endpoint_available", "seconds": round(seconds, 3)}
                        | fields,
                    )  # fmt: skip
                return
            reason = redact(str(caught_exception))
            if not outage:
                outage.append(Outage(f"{name} endpoint {endpoint}", every))
                log.warning(
                    "%s endpoint %s unreachable (%s); %s", name, endpoint, reason, tries,
                    extra={"event": "endpoint_unavailable", "attempt": attempts} | fields,
                )  # fmt: skip
                return
            going_on = outage[0]
        going_on.still(
            log,
            f"{name} endpoint {endpoint} still unreachable since {going_on.since} "
            f"({going_on.lasted():.0f} s); {tries}",
            "endpoint_still_unavailable",
            attempt=attempts,
            attempts=total,
            **fields,
        )

    event = f"needs-retry.{client.meta.service_model.service_id.hyphenize()}"
    unique_id = f"loginetl-watching-{id(needs_retry)}"
    client.meta.events.register(event, needs_retry, unique_id=unique_id)
    try:
        yield
    finally:
        client.meta.events.unregister(event, unique_id=unique_id)
