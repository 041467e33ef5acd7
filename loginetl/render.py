"""Turns what the services return into rich tables or JSON (cli.py adds the progress line and
logs.py the log handler; the services never touch the terminal).

Values that came off the queue are shown as plain Text with control characters and lone
surrogates replaced, so a hostile message cannot inject markup or terminal escapes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .schema import InitReport
from .peek import PeekResult
from .pipeline import RunSummary
from .audit import AuditReport
from .replay import ReplaySummary

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
        table.add_row("table", "created" + (", partitioned by month" if report.partitioned else ""))
    else:
        table.add_row("table", f"found, {report.row_count} rows kept")
    table.add_row("columns added", ", ".join(report.added_columns) or "none needed")
    table.add_row(
        "user_logins_message_ids (unique ids)" if report.partitioned
        else "unique index on sqs_message_id",
        "created" if report.created_index else "found",
    )  # fmt: skip
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
        "partitioned": report.partitioned,
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
    if summary.released:
        table.add_row("given back unprocessed (stopped early)", str(summary.released))
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


def replay_summary(summary: ReplaySummary) -> Group:
    verb = "would move" if summary.dry_run else "moved"
    table = Table(
        title=f"loginetl replay-dlq{' (dry run)' if summary.dry_run else ''}", show_header=False
    )
    table.add_column("what", style="bold")
    table.add_column("messages", justify="right", overflow="fold")
    table.add_row("dead-letter queue", safe(summary.dlq_url, 200))
    table.add_row("to", safe(summary.destination or "each message's source queue", 200))
    if summary.reason_filter is not None:
        table.add_row("reason contains", safe(summary.reason_filter))
    table.add_row("received", str(summary.received))
    if summary.dry_run:
        table.add_row(verb, str(len(summary.messages)))
    else:
        table.add_row(verb, str(sum(summary.moved.values())))
        for reason, count in summary.moved.most_common(10):
            table.add_row(Text("  ") + safe(reason), str(count))
    table.add_row("skipped by --reason", str(summary.skipped))
    if not summary.dry_run:
        table.add_row("failed (still on the DLQ)", str(sum(summary.failed.values())))
        for error, count in summary.failed.most_common(10):
            table.add_row(Text("  ") + safe(error), str(count))
    if summary.delete_failures:
        table.add_row("sent but not deleted (run skips the copy)", str(summary.delete_failures))
    table.add_row("elapsed", f"{summary.elapsed:.1f} s")
    table.add_row("stopped because", summary.stopped_because)
    if not summary.messages:
        return Group(table)
    what = "to move" if summary.dry_run else "not moved"
    listed = Table(title=f"{what}: {len(summary.messages)}")
    listed.add_column("message id", overflow="fold", ratio=2)
    listed.add_column("original id", overflow="fold", ratio=2)
    listed.add_column("reason", overflow="fold", ratio=3)
    listed.add_column("receives", justify="right")
    listed.add_column("sent (UTC)", ratio=1)
    listed.add_column("fields" if summary.dry_run else "error", overflow="fold", ratio=3)
    if summary.dry_run:
        listed.add_column("run would")
    for message in summary.messages:
        would = []
        if summary.dry_run:
            would = [
                Text("load", style="green") if message.would_load else Text("refuse", style="red")
            ]
        if message.error is not None:
            last = Text("cannot move: ", style="red") + safe(message.error, 200)
        else:
            last = Text("\n").join(
                safe(name, 24) + Text("=") + safe(value, 40)
                for name, value in message.fields.items()
            )
        listed.add_row(
            safe(message.message_id), safe(message.original_message_id), safe(message.reason, 200),
            str(message.receive_count), message.sent_at, last, *would,
        )  # fmt: skip
    return Group(table, listed)


_STATUS_STYLES = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def audit_table(report: AuditReport) -> Table:
    scope = report.sample or "every row"
    table = Table(
        title=f"verify-masking: user_logins on {report.location}, {report.rows} rows ({scope}), "
        f"key id {report.key_id}"
    )
    table.add_column("check", style="bold", ratio=2)
    table.add_column("result")
    table.add_column("checked", justify="right")
    table.add_column("failing", justify="right")
    table.add_column("detail", overflow="fold", ratio=5)
    for check in report.checks:
        table.add_row(
            check.name,
            Text(check.status.upper(), style=_STATUS_STYLES.get(check.status, "")),
            str(check.checked),
            str(check.failing),
            safe(check.detail, 1000),
        )
    raw = report.raw_messages
    if raw["given"]:
        table.caption = (
            f"{raw['given']} raw messages given, {raw['not_loadable']} not loadable, "
            f"{raw['compared']} compared"
        )
    return table
