"""Reaching both ends at start, side by side: the database in the calling thread (waited out
for --retry-for, as any outage of it), each other end (the SQS queue and its dead-letter queue,
the Kinesis stream) in a thread of its own, at once. An end that cannot be reached is so named
at once, in a warning of its own, whatever the others do: a dead SQS endpoint is not said only
after the database's wait, nor a dead database only after botocore's retries.

What each end's failure means is unchanged: the database is waited for, for --retry-for; an
SQS or Kinesis endpoint that botocore's retries gave up on ends the run, exit 1, with one line
naming it, and ends the wait for the database at once (the run cannot go on without it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, NamedTuple, TypeVar

from .. import outages
from ..database import Database
from ..errors import LoginetlError

T = TypeVar("T")


class OtherEnd(NamedTuple):
    client: Any  # the boto3 client `check` calls (None: not AWS, nothing to watch)
    name: str  # its service as people say it: "SQS", "Kinesis"
    check: Callable[[], object]  # reaches it, raising what its calls raise


def side_by_side(db: Database, work: Callable[[Any], T], action: str, others: list[OtherEnd]) -> T:
    """`db.call(work, action)` here and each other end's check in a thread, all at once, the
    endpoint watched (outages.watching); what `work` returned, once every check passed. The
    first check to fail interrupts the wait for the database and its error is raised; an error
    of the database (not an outage, or an outage longer than --retry-for) is raised at once."""
    failures: list[BaseException] = []

    def check(end: OtherEnd) -> None:
        try:
            watched = (
                nullcontext() if end.client is None else outages.watching(end.client, end.name)
            )
            with watched:
                end.check()
        except BaseException as error:  # noqa: BLE001 - raised in the calling thread below
            failures.append(error)
            db.interrupt()

    threads = [
        threading.Thread(target=check, args=(end,), name=f"reach-{end.name}", daemon=True)
        for end in others
    ]
    for thread in threads:
        thread.start()
    try:
        result = db.call(work, action)
    except LoginetlError:
        if failures:  # the wait was interrupted: the other end's error is the run's
            raise failures[0] from None
        raise
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return result
