"""The bench's report: the results as one dict (the figures, the ratios, the drain targets met
or not), printed as rich tables or as JSON. For python -m benchmarks."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from .environment import Rate
from .measure import SizeResult

# The drain targets: loginetl against the bare consumer and the naive loop.
RUN_VS_BARE = 0.9
RUN_VS_NAIVE = 10.0
RSS_LIMIT_MB = 150.0
RSS_GROWTH = 1.2


def results(args, endpoint: str, naive: Rate, sizes: list[SizeResult]) -> dict:
    """Everything measured, as printed by --json."""
    rows = [size_row(size, naive) for size in sizes]
    smallest = min(rows, key=lambda row: row["messages"])
    largest = max(rows, key=lambda row: row["messages"])
    growth = largest["peak_rss_mb"] / smallest["peak_rss_mb"] if len(rows) > 1 else None
    return {
        "command": " ".join([".venv/bin/python", "-m", "benchmarks", *sys.argv[1:]]),
        "endpoint": endpoint,
        "loginetl_revision": args.revision,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "naive": {
            "messages": naive.messages,
            "per_second": round(naive.per_second, 1),
            "seconds": round(naive.seconds, 2),
            "endpoint_cpu_ms_per_message": rounded(naive.endpoint_ms_per_message, 3),
            "endpoint_busy": rounded(naive.endpoint_busy, 3),
        },
        "sizes": rows,
        "rss_growth": round(growth, 3) if growth is not None else None,
        "targets": targets(rows, smallest, largest, growth),
        "checks_passed": all(row["checks_passed"] for row in rows),
    }


def size_row(size: SizeResult, naive: Rate) -> dict:
    """One queue size: the medians of its rounds, its checks, and every round."""
    return {
        "messages": size.messages,
        "invalid": size.invalid,
        "bare_per_second": round(size.bare.per_second, 1),
        "bare_seconds": round(size.bare.seconds, 2),
        "bare_drained": size.bare.messages,
        "run_per_second": round(size.run.rate.per_second, 1),
        "run_seconds": round(size.run.rate.seconds, 2),
        # loginetl's own figure: from its first receive, without interpreter start-up
        "run_reported_per_second": size.run.summary.get("messages_per_second"),
        "run_exit_code": size.run.exit_code,
        "peak_rss_mb": round(size.peak_rss_mb, 1),  # the highest of the rounds
        "run_vs_bare": round(size.run.rate.per_second / size.bare.per_second, 3),
        "run_vs_naive": round(size.run.rate.per_second / naive.per_second, 1),
        # The SQS server's CPU per message and its busy share of one core, when it is our
        # LocalStack: equal ms/message and busy near 1 in both means the server is the limit.
        "endpoint_cpu_ms_per_message": {
            "bare": rounded(size.bare.endpoint_ms_per_message, 3),
            "run": rounded(size.run.rate.endpoint_ms_per_message, 3),
        },
        "endpoint_busy": {
            "bare": rounded(size.bare.endpoint_busy, 3),
            "run": rounded(size.run.rate.endpoint_busy, 3),
        },
        "checks_passed": not size.problems,
        "problems": size.problems,
        # every round, when --repeat > 1: the figures above are the medians
        "rounds": [
            {"bare_per_second": round(bare.per_second, 1),
             "run_per_second": round(run.rate.per_second, 1),
             "peak_rss_mb": round(run.peak_rss_mb, 1)}
            for bare, run in zip(size.bares, size.runs, strict=True)
        ],
    }  # fmt: skip


def targets(rows: list[dict], smallest: dict, largest: dict, growth: float | None) -> list[dict]:
    """The drain targets, each with the figure measured and whether it is met."""
    at = f"at {largest['messages']:,}"
    found = [
        target(f"run ≥ {RUN_VS_BARE} × bare {at}", largest["run_vs_bare"], RUN_VS_BARE, "≥"),
        target(f"run ≥ {RUN_VS_NAIVE:g} × naive {at}", largest["run_vs_naive"], RUN_VS_NAIVE, "≥"),
        target(
            f"peak RSS ≤ {RSS_LIMIT_MB:g} MB", max(row["peak_rss_mb"] for row in rows),
            RSS_LIMIT_MB, "≤",
        ),
    ]  # fmt: skip
    if growth is not None:
        found.append(target(
            f"RSS at {largest['messages']:,} ≤ {RSS_GROWTH} × at {smallest['messages']:,}",
            round(growth, 3), RSS_GROWTH, "≤",
        ))  # fmt: skip
    return found


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def target(name: str, value: float, limit: float, sense: str) -> dict:
    met = value >= limit if sense == "≥" else value <= limit
    return {"target": name, "value": value, "met": met}


def print_tables(result: dict) -> None:
    out = Console()
    if not out.is_terminal:  # piped into a file or a note: wide enough not to wrap the table
        out = Console(width=140)
    title = (
        f"loginetl {result['loginetl_revision']} run vs bare drain ({result['concurrency']}"
        f" threads) and naive loop — batch {result['batch_size']}, "
        f"--concurrency {result['concurrency']}"
    )
    table = Table(title=title, title_justify="left")
    for name in ("messages", "bare msg/s", "run msg/s", "(its own)", "run/bare", "run/naive",
                 "peak RSS", "server ms/msg", "server busy", "checks"):  # fmt: skip
        table.add_column(name, justify="right" if name != "checks" else "left")
    for row in result["sizes"]:
        cpu, busy = row["endpoint_cpu_ms_per_message"], row["endpoint_busy"]
        table.add_row(
            f"{row['messages']:,}",
            f"{row['bare_per_second']:,.0f}",
            f"{row['run_per_second']:,.0f}",
            f"{row['run_reported_per_second'] or 0:,.0f}",
            f"{row['run_vs_bare']:.2f}",
            f"{row['run_vs_naive']:.1f}",
            f"{row['peak_rss_mb']:.0f} MB",
            f"{cpu['bare']:.2f} / {cpu['run']:.2f}" if cpu["run"] is not None else "-",
            f"{busy['bare']:.0%} / {busy['run']:.0%}" if busy["run"] is not None else "-",
            "ok" if row["checks_passed"] else "[red]" + "; ".join(row["problems"]) + "[/]",
        )
    naive = result["naive"]
    rounds = (
        f"; medians of {result['repeat']} rounds, RSS the highest" if result["repeat"] > 1 else ""
    )
    table.caption = (
        f"naive: {naive['per_second']:,.0f} msg/s on {naive['messages']:,} messages; "
        "run msg/s from wall time (start-up included), '(its own)' from loginetl's summary"
        f"{rounds}; server ms/msg and busy: the SQS server's CPU per message and share of one"
        " core, bare / run"
    )
    table.caption_justify = "left"
    out.print(table)
    targets = Table(title="targets", title_justify="left")
    targets.add_column("target")
    targets.add_column("measured", justify="right")
    targets.add_column("")
    for item in result["targets"]:
        targets.add_row(
            item["target"],
            f"{item['value']:g}",
            "[green]met[/]" if item["met"] else "[red]not met[/]",
        )
    out.print(targets)


def print_json(result: dict) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False))


def print_privacy(privacy: dict) -> None:
    """The privacy costs: masking CPU per message by mode, and rekey throughput."""
    out = Console() if Console().is_terminal else Console(width=140)
    masking, rekey = privacy["masking"], privacy["rekey"]
    table = Table(title="privacy costs", title_justify="left")
    for name in ("figure", "measured"):
        table.add_column(name, justify="left" if name == "figure" else "right")
    table.add_row(f"hmac: CPU per message (validate + mask, {masking['messages']:,})",
                  f"{masking['hmac_us_per_message']:.2f} µs")  # fmt: skip
    table.add_row("siv: CPU per message", f"{masking['siv_us_per_message']:.2f} µs")
    table.add_row("hmac: the two masks alone", f"{masking['hmac_mask_us_per_message']:.2f} µs")
    table.add_row("siv: the two masks alone", f"{masking['siv_mask_us_per_message']:.2f} µs")
    table.add_row(
        f"rekey {rekey['rows']:,} siv rows, batch {rekey['batch_size']}",
        f"{rekey['seconds']:.1f} s, {rekey['rows_per_second']:,.0f} rows/s",
    )
    table.add_row("rekey checks (all moved, none left, second run 0)",
                  "ok" if rekey["checks_passed"] else "[red]failed[/]")  # fmt: skip
    for item in privacy["targets"]:
        verdict = "[green]met[/]" if item["met"] else "[red]not met[/]"
        table.add_row(item["target"], f"{item['value']:g} {verdict}")
    out.print(table)
