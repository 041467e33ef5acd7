"""What a service returns, as plain data for `--json`: its dataclass fields, some replaced or
added by derived values (totals, rounded times), some left out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def plain(result, drop: tuple[str, ...] = (), **derived) -> dict:
    """The fields of the dataclass `result` (shallow: nested values as they are), without those
    in `drop`, then `derived` added or put in place of a field of the same name."""
    data = {
        field.name: getattr(result, field.name)
        for field in dataclasses.fields(result)
        if field.name not in drop
    }
    return data | derived


@dataclass(kw_only=True)
class Outcome:
    """How a long operation (a run, a replay) ended: how long it took, why it stopped, the
    error it stopped on if any, and the exit code the CLI ends with."""

    elapsed: float = 0.0
    stopped_because: str = ""
    error: str | None = None
    exit_code: int = 0
