"""Turns what the services return into rich tables or JSON (cli.py adds the progress line and
logs.py the log handler; the services never touch the terminal).

Values that came off the queue are shown as plain Text with control characters and lone
surrogates replaced, so a hostile message cannot inject markup or terminal escapes.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, JustifyMethod, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..audit import AuditReport
from ..peek import PeekResult
from ..pipeline import RunSummary
from ..privacy import EraseResult, LookupResult, RekeyReport, Unmasked
from ..replay import ReplaySummary
from ..retention import PruneReport
from ..schema import InitReport
from ..status import StatusReport

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


NARROW = 120  # below this width, one record per message (as psql's \\x) instead of a wide table


def safe(value: Any, limit: int | None = None) -> Text:
    """Plain text (no markup, control characters and lone surrogates replaced); past `limit`
    characters it says how many more there are rather than ending in an ellipsis."""
    text = "" if value is None else str(value)
    text = _UNPRINTABLE.sub("\ufffd", text)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]} [+{len(text) - limit} characters]"
    return Text(text)


class Path:
    """A URL or a database location that wraps only after a "/" (never inside a name, unless
    one alone is wider than the column), and that no column squeezes below its longest part."""

    def __init__(self, text: str) -> None:
        self.parts = re.findall(r"[^/]*(?:/+|$)", safe(text).plain)[:-1] or [""]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        lengths = [cell_len(part) for part in self.parts]
        return Measurement(max(lengths), sum(lengths)).clamp(max_width=options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines, line = [], ""
        for part in self.parts:
            if line and cell_len(line) + cell_len(part) > options.max_width:
                lines.append(line)
                line = ""
            line += part
        yield Text("\n".join([*lines, line]), justify="left", overflow="fold")


def table(title: str | None = None, *columns: str, **settings) -> Table:
    """A table whose cells wrap, never cut: long words fold onto the next line. It is at least
    as wide as its title, so the title stays on one line while the terminal is wide enough."""
    if title:
        settings.setdefault("min_width", cell_len(title) + 4)
    made = Table(title=title, **settings)
    for column in columns:
        name, _, justify = column.partition(":")
        made.add_column(name, overflow="fold", justify=cast(JustifyMethod, justify or "left"))
    return made


def facts(title: str) -> Table:
    """A two-column table of `what: value` lines."""
    made = table(title, "what", "value", show_header=False)
    made.columns[0].style = "bold"
    return made


def as_json(data: dict | list) -> str:
    return json.dumps(data, indent=2, default=str)


def as_json_line(data: dict | list) -> str:
    return json.dumps(data, default=str)


def init_report(report: InitReport) -> Group:
    summary = facts(f"user_logins on {report.location}")
    if report.created:
        summary.add_row(
            "table", "created" + (", partitioned by month" if report.partitioned else "")
        )
    else:
        summary.add_row("table", f"found, {report.row_count} rows kept")
    summary.add_row("columns added", ", ".join(report.added_columns) or "none needed")
    summary.add_row(
        "user_logins_message_ids (unique ids)"
        if report.partitioned
        else "unique index on sqs_message_id",
        "created" if report.created_index else "found",
    )
    summary.add_row("lookup indexes", ", ".join(report.created_indexes) or "found")
    if report.legacy_app_version:
        summary.add_row(
            "app_version", "integer (take-home DDL): loads store the major version number"
        )
    for role in report.granted_to:
        summary.add_row(f"role {role}", "granted what run, peek, status, verify-masking need")
    columns = table("columns", "column", "type")
    for name, kind in report.columns.items():
        columns.add_row(name, kind)
    return Group(summary, columns)


def prune_report(report: PruneReport) -> Table:
    summary = facts(f"prune user_logins on {report.location}")
    summary.add_row("rows before", report.cutoff.isoformat())
    summary.add_row("matched", str(report.matched))
    if not report.applied:
        summary.add_row("deleted", "nothing: counted only (add --yes to delete)")
        return summary
    summary.add_row("deleted", f"{report.deleted} in {report.batches} batches")
    summary.add_row("partitions dropped", ", ".join(report.partitions_dropped) or "none")
    return summary


def init_report_dict(report: InitReport) -> dict:
    return {
        "database": report.location,
        "created": report.created,
        "partitioned": report.partitioned,
        "added_columns": report.added_columns,
        "created_index": report.created_index,
        "created_indexes": report.created_indexes,
        "row_count": report.row_count,
        "legacy_app_version": report.legacy_app_version,
        "columns": report.columns,
        "granted_to": report.granted_to,
    }


def _counted(summary: Table, label: str, counts) -> None:
    """A total, then its ten largest parts by reason (reasons wrap, whole)."""
    summary.add_row(label, str(sum(counts.values())))
    for reason, count in counts.most_common(10):
        summary.add_row(Text("  ") + safe(reason), str(count))


def run_summary(summary: RunSummary) -> Table:
    made = table("loginetl run", "what", "messages:right", show_header=False)
    made.columns[0].style = "bold"
    made.add_row("received", str(summary.received))
    made.add_row("loaded", str(summary.loaded))
    made.add_row("already loaded (duplicates)", str(summary.duplicates))
    if summary.erased:
        made.add_row("erased before (not loaded again)", str(summary.erased))
    _counted(made, "dead-lettered", summary.dead_lettered)
    _counted(made, "left on queue", summary.left_on_queue)
    for name, count in summary.extra_fields.most_common(10):  # names only, never values
        made.add_row(Text("extra field ") + safe(name, 64), str(count))
    if set(summary.envelopes) - {"raw"}:  # logins came wrapped: say in what
        for envelope, count in sorted(summary.envelopes.items()):
            made.add_row(f"came as {envelope}", str(count))
    if summary.released:
        made.add_row("given back unprocessed (stopped early)", str(summary.released))
    if summary.delete_failures:
        made.add_row("loaded but not deleted (will be skipped)", str(summary.delete_failures))
    made.add_row("elapsed", f"{summary.elapsed:.1f} s")
    made.add_row("messages/s", f"{summary.messages_per_second:.1f}")
    made.add_row("stopped because", summary.stopped_because)
    if summary.endpoint:
        made.add_row("SQS endpoint", Path(summary.endpoint))
    return made


def _fields(fields: dict) -> Text:
    return Text("\n").join(
        safe(name, 24) + Text("=") + safe(value, 200) for name, value in fields.items()
    )


def _verdict(verdict: str) -> Text:
    if verdict == "load":
        return Text("load", style="green")
    return Text("dead-letter: ", style="red") + safe(verdict)


def peek_table(result: PeekResult, width: int = NARROW) -> Group | Table:
    title = f"{len(result.messages)} messages on {result.queue_url}"
    via = f"via {result.endpoint}"  # the endpoint called, beside the URL (titles stay short)
    if width < NARROW:  # one record per message: ids and times whole
        records: list[RenderableType] = [Text(title, style="bold"), Path(via)]
        for number, message in enumerate(result.messages, 1):
            record = facts(f"message {number} of {len(result.messages)}")
            record.add_row("message id", safe(message.message_id))
            record.add_row("sent (UTC)", message.sent_at)
            record.add_row("receives", str(message.receive_count))
            record.add_row("envelope", message.envelope)
            record.add_row("would", _verdict(message.verdict))
            record.add_row("fields", _fields(message.fields))
            records.append(record)
        return Group(*records)
    made = table(title, "message id", "sent (UTC)", "receives:right", "fields", "would")
    made.caption = via
    for message in result.messages:
        would = _verdict(message.verdict)
        if message.envelope != "raw":  # what the login came in, beside what happens to it
            would = Text(f"({message.envelope}) ") + would
        made.add_row(
            safe(message.message_id),
            message.sent_at,
            str(message.receive_count),
            _fields(message.fields),
            would,
        )
    return made


def replay_summary(summary: ReplaySummary, width: int = NARROW) -> Group:
    verb = "would move" if summary.dry_run else "moved"
    made = table(
        f"loginetl replay-dlq{' (dry run)' if summary.dry_run else ''}",
        "what",
        "messages:right",
        show_header=False,
    )
    made.columns[0].style = "bold"
    made.add_row("dead-letter queue", Path(summary.dlq_url))
    made.add_row(
        "to", Path(summary.destination) if summary.destination else "each message's source queue"
    )
    made.add_row("SQS endpoint", Path(summary.endpoint))
    if summary.reason_filter is not None:
        made.add_row("reason contains", safe(summary.reason_filter))
    made.add_row("received", str(summary.received))
    if summary.dry_run:
        made.add_row(verb, str(len(summary.messages)))
    else:
        _counted(made, verb, summary.moved)
    made.add_row("skipped by --reason", str(summary.skipped))
    if not summary.dry_run:
        _counted(made, "failed (still on the DLQ)", summary.failed)
    if summary.delete_failures:
        made.add_row("sent but not deleted (run skips the copy)", str(summary.delete_failures))
    made.add_row("elapsed", f"{summary.elapsed:.1f} s")
    made.add_row("stopped because", summary.stopped_because)
    if not summary.messages:
        return Group(made)
    return Group(made, _replayed(summary, width))


def _replayed(summary: ReplaySummary, width: int):
    """The messages a dry run would move, or those a replay could not move."""
    title = f"{'to move' if summary.dry_run else 'not moved'}: {len(summary.messages)}"
    records = []
    for message in summary.messages:
        record: list[tuple[str, RenderableType]] = [
            ("message id", safe(message.message_id)),
            ("original id", safe(message.original_message_id)),
            ("reason", safe(message.reason)),
            ("receives", str(message.receive_count)),
            ("sent (UTC)", message.sent_at),
        ]
        if message.error is not None:
            record.append(("error", Text("cannot move: ", style="red") + safe(message.error)))
        else:
            record.append(("fields", _fields(message.fields)))
        if summary.dry_run:
            loads = message.would_load
            record.append(
                ("run would", Text("load", style="green") if loads else Text("refuse", style="red"))
            )
        records.append(record)
    if width < NARROW:
        shown: list[RenderableType] = [Text(title, style="bold")]
        for number, record in enumerate(records, 1):
            one = facts(f"message {number} of {len(records)}")
            for label, value in record:
                one.add_row(label, value)
            shown.append(one)
        return Group(*shown)
    listed = table(title, *(label for label, _ in records[0]))
    listed.columns[3].justify = "right"
    for record in records:
        listed.add_row(*(value for _, value in record))
    return listed


_STATUS_STYLES = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def audit_table(report: AuditReport) -> Table:
    scope = report.sample or "every row"
    made = table(
        f"verify-masking: user_logins on {report.location}, {report.rows} rows ({scope}), "
        f"key id {report.key_id}",
        "check",
        "result",
        "checked:right",
        "failing:right",
        "detail",
    )
    made.columns[0].style = "bold"
    made.columns[4].ratio = 5
    made.columns[0].ratio = 2
    for check in report.checks:
        made.add_row(
            check.name,
            Text(check.status.upper(), style=_STATUS_STYLES.get(check.status, "")),
            str(check.checked),
            str(check.failing),
            safe(check.detail),
        )
    raw = report.raw_messages
    if raw["given"]:
        made.caption = (
            f"{raw['given']} raw messages given, {raw['not_loadable']} not loadable, "
            f"{raw['compared']} compared"
        )
    if report.endpoint:
        made.caption = f"{made.caption or ''} (messages peeked via {report.endpoint})".lstrip()
    return made


def stream_shards(stream: dict) -> Group:
    """One record per shard: ids and sequence numbers are too long for columns at 80."""
    records: list = [Text(f"stream {stream['name']}: {len(stream['shards'])} shards", style="bold")]
    for shard in stream["shards"]:
        shown = facts(f"shard {shard['id']}")
        for name in ("state", "parent", "owner", "checkpoint", "lease_expires"):
            shown.add_row(name.replace("_", " "), safe(shard[name] or "-"))
        if shard.get("renewed_seconds_ago") is not None:
            stale = " (stale: its holder stopped renewing)" if shard.get("stale") else ""
            shown.add_row("renewed", f"{shard['renewed_seconds_ago']:g} s ago{stale}")
        if shard.get("behind"):
            shown.add_row("behind", "records wait after the checkpoint, nobody reads them")
        records.append(shown)
    return Group(*records)


def status_report(report: StatusReport) -> Group:
    parts: list[RenderableType] = [] if report.stream is None else [stream_shards(report.stream)]
    for title, queue in (("source queue", report.queue), ("dead-letter queue", report.dlq)):
        if queue is None:
            continue
        shown = facts(title)
        shown.add_row("url", Path(queue["url"]))
        shown.add_row("endpoint", Path(report.endpoint or ""))
        for name in ("visible", "in_flight", "delayed"):
            shown.add_row(name.replace("_", " "), str(queue[name]))
        for number, reason in enumerate(queue.get("reasons", []), 1):
            shown.add_row(f"reason {number}", safe(reason))
        parts.append(shown)
    table_status = report.table
    if table_status is not None:
        shown = facts(f"table {table_status['name']} on {table_status['location']}")
        if not table_status["exists"]:
            shown.add_row("exists", "no")
        else:
            shown.add_row("rows", str(table_status["rows"]))
            shown.add_row("last loaded at", str(table_status["last_loaded_at"] or "never"))
            keys = table_status.get("mask_keys", {})
            for key_id, count in table_status["mask_key_ids"].items():
                kind = keys.get(key_id, {}).get("status")
                current = f" ({kind})" if kind else ""
                shown.add_row(f"rows under key id {key_id}{current}", str(count))
            if table_status.get("unsearchable_rows"):
                unsearchable = str(table_status["unsearchable_rows"])
                shown.add_row("rows lookup and erase cannot search", unsearchable)
            for name, estimate in table_status["partitions"].items():
                shown.add_row(f"partition {name}", f"about {estimate} rows")
            _extra_kept(shown, table_status.get("extra_fields"))
        parts.append(shown)
    wrong = facts("looks wrong" if report.problems or report.errors else "looks right")
    for line in report.errors:
        wrong.add_row(Text("unreachable", style="bold red"), safe(line))
    for line in report.problems:
        wrong.add_row(Text("warning", style="yellow"), safe(line))
    if not (report.problems or report.errors):
        wrong.add_row("", "nothing to report")
    parts.append(wrong)
    return Group(*parts)


def _extra_kept(shown: Table, extra: dict | None) -> None:
    """The extra fields rows keep, by name (never a value)."""
    if extra is None:
        return
    shown.add_row("rows keeping extra fields", str(extra["rows"]))
    for name, count in extra["fields"].items():
        shown.add_row(Text("extra field ") + safe(name, 64), f"{count} rows")
    if extra["other_names"]:
        shown.add_row("other extra fields", f"{extra['other_names']} more names")


def _record(title: str, data: dict) -> Table:
    """One fact a line; a JSON value (a row's `extra`) as the JSON text it is stored as."""
    shown = facts(title)
    for name, value in data.items():
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        shown.add_row(name.replace("_", " "), safe(text))
    return shown


def lookup_rows(result: LookupResult) -> Group:
    """One record per row (as psql's \\x): masks and ids whole at any width."""
    count = len(result.rows)
    more = f" (the newest {result.limit}: --limit shows more)" if count == result.limit else ""
    parts: list[RenderableType] = [
        Text(f"{count} rows in user_logins on {result.location}{more}", style="bold")
    ]
    parts += [_record(f"row {n} of {count}", row) for n, row in enumerate(result.rows, 1)]
    return Group(*parts)


def erase_result(result: EraseResult) -> Table:
    counted = result.deleted is None
    title = "erase (counted only: --yes deletes)" if counted else "erase"
    shown = _record(f"{title} on {result.location}", {"matched": result.matched})
    if not counted:
        shown.add_row("deleted", str(result.deleted))
    for key_id, count in result.key_ids.items():
        shown.add_row(f"under key id {key_id}", str(count))
    for key_id, count in result.unsearched.key_ids.items():
        shown.add_row(f"not searched: key id {key_id}", str(count))
    return shown


def unmasked(result: Unmasked) -> Table:
    """The row's values, each extra field on a line of its own under its name."""
    data = result.as_dict()
    extra = data.pop("extra")
    shown = _record(f"unmasked (key id {result.mask_key_id})", data)
    for name, value in extra.items():
        shown.add_row(Text("extra field ") + safe(name, 64), safe(value))
    return shown


def rekey_report(report: RekeyReport) -> Table:
    title = "rekey (dry run: nothing changed)" if report.dry_run else "rekey"
    data = report.as_dict()
    shown = _record(title, {k: v for k, v in data.items() if k not in ("by_key_id", "dry_run")})
    for key_id, count in data["by_key_id"].items():
        shown.add_row(f"from key id {key_id}", str(count))
    return shown
