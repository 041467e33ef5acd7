"""Turns what the services return into rich tables or JSON. The only module that knows rich.

Values that came off the queue are shown as plain Text with control characters and lone
surrogates replaced, so a hostile message cannot inject markup or terminal escapes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.table import Table
from rich.text import Text

from .load import InitReport
from .pipeline import PeekResult, RunSummary

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def safe(value: Any, limit: int = 80) -> Text:
    text = "" if value is None else str(value)
    text = _UNPRINTABLE.sub("\ufffd", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return Text(text)


def as_json(data: dict) -> str:
    return json.dumps(data, indent=2, default=str)


def init_report(report: InitReport) -> Table:
    table = Table(title=f"user_logins on {report.location}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("result")
    if report.created:
        table.add_row("table", "created")
    else:
        table.add_row("table", f"found, {report.row_count} rows kept")
    table.add_row("columns added", ", ".join(report.added_columns) or "none needed")
    table.add_row(
        "unique index on sqs_message_id", "created" if report.created_index else "found"
    )
    if report.legacy_app_version:
        table.add_row(
            "app_version",
            "integer (take-home DDL): loads store the major version number",
        )
    table.add_row("columns", ", ".join(f"{name} {kind}" for name, kind in report.columns.items()))
    return table


def init_report_dict(report: InitReport) -> dict:
    return {
        "database": report.location,
        "created": report.created,
        "added_columns": report.added_columns,
        "created_index": report.created_index,
        "row_count": report.row_count,
        "legacy_app_version": report.legacy_app_version,
        "columns": report.columns,
    }


def run_summary(summary: RunSummary) -> Table:
    table = Table(title="loginetl run", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("messages", justify="right")
    table.add_row("received", str(summary.received))
    table.add_row("loaded", str(summary.loaded))
    table.add_row("already loaded (duplicates)", str(summary.duplicates))
    table.add_row("dead-lettered", str(sum(summary.dead_lettered.values())))
    for reason, count in summary.dead_lettered.most_common(10):
        table.add_row(Text("  ") + safe(reason), str(count))
    table.add_row("left on queue", str(sum(summary.left_on_queue.values())))
    for reason, count in summary.left_on_queue.most_common(10):
        table.add_row(Text("  ") + safe(reason), str(count))
    if summary.delete_failures:
        table.add_row("loaded but not deleted (will be skipped)", str(summary.delete_failures))
    table.add_row("elapsed", f"{summary.elapsed:.1f} s")
    table.add_row("messages/s", f"{summary.messages_per_second:.1f}")
    table.add_row("stopped because", summary.stopped_because)
    return table


def peek_table(result: PeekResult) -> Table:
    table = Table(title=f"{len(result.messages)} messages on {result.queue_url}")
    table.add_column("message id", overflow="fold", ratio=2)
    table.add_column("sent (UTC)", ratio=1)
    table.add_column("receives", justify="right")
    table.add_column("fields", ratio=3, overflow="fold")
    table.add_column("would", ratio=2)
    for message in result.messages:
        fields = Text("\n").join(
            safe(name, 24) + Text("=") + safe(value, 40) for name, value in message.fields.items()
        )
        verdict = (
            Text("load", style="green")
            if message.verdict == "load"
            else Text("dead-letter: ", style="red") + safe(message.verdict)
        )
        table.add_row(
            safe(message.message_id), message.sent_at, str(message.receive_count), fields, verdict
        )
    return table
