"""CPU per message of `loginetl run` on SNS-wrapped bodies against raw ones (`--envelopes`):
the same logins, seeded as they are and in SNS notification envelopes, run in alternating
order each round, on the same endpoint and database. The target: an envelope costs at most
SNS_VS_RAW times the CPU of a raw body."""

from __future__ import annotations

import argparse

from rich.table import Table

from .environment import Endpoint, console
from .measure import RunResult, measure_run

SNS_VS_RAW = 1.2


def measure_envelopes(
    sqs, endpoint: Endpoint, database: str, environment: dict, args: argparse.Namespace
) -> dict:
    n = args.messages[0]
    runs: dict[str, list[RunResult]] = {"raw": [], "sns": []}
    for round_number in range(args.repeat):
        order = ("raw", "sns") if round_number % 2 == 0 else ("sns", "raw")
        for envelope in order:
            console.print(f"[bold]{n:,} {envelope} messages, round {round_number + 1}[/]")
            args.envelope = envelope
            runs[envelope].append(
                measure_run(sqs, endpoint, database, environment, n, args, args.concurrency)
            )
    args.envelope = "raw"
    ratios = [
        sns.rate.ms_per_message / raw.rate.ms_per_message
        for raw, sns in zip(runs["raw"], runs["sns"], strict=True)
    ]
    ratio = sorted(ratios)[(len(ratios) - 1) // 2]
    problems = [p for results in runs.values() for result in results for p in result.problems]
    return {
        "messages": n,
        "cpu_ms_per_message": {
            envelope: [round(r.rate.ms_per_message, 4) for r in results]
            for envelope, results in runs.items()
        },
        "sns_vs_raw": [round(r, 3) for r in ratios],
        "median_sns_vs_raw": round(ratio, 3),
        "target": {"sns ≤ 1.2 × raw CPU/message": ratio <= SNS_VS_RAW},
        "problems": problems,
    }


def print_envelopes(result: dict) -> None:
    shown = Table(title=f"CPU per message, {result['messages']:,} messages a run")
    for column in ("round", "raw ms", "sns ms", "sns / raw"):
        shown.add_column(column, justify="right")
    cpu = result["cpu_ms_per_message"]
    for number, ratio in enumerate(result["sns_vs_raw"]):
        shown.add_row(str(number + 1), f"{cpu['raw'][number]:.4f}",
                      f"{cpu['sns'][number]:.4f}", f"{ratio:.3f}")  # fmt: skip
    console.print(shown)
    met = "met" if result["median_sns_vs_raw"] <= SNS_VS_RAW else "[red]NOT met[/]"
    console.print(f"median sns/raw {result['median_sns_vs_raw']:.3f} (≤ {SNS_VS_RAW}: {met})")
    for problem in result["problems"]:
        console.print(f"[red]{problem}[/]")
