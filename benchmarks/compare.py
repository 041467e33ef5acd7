"""CPU per message of `loginetl run` in one variant against another, on the same logins, run in
alternating order each round on the same endpoint and database (`--envelopes`, `--keep-extra`):

  envelopes   the logins in SNS notification envelopes against raw ones;
  keep-extra  logins with three extra fields run with `--keep-extra` (one masked, through
              LOGINETL_MASK_EXTRA) against the same logins run without it (the fields counted).

The target: the variant costs at most `target` times the CPU a message of its baseline."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from rich.table import Table

from .environment import EXTRA_MASKED, RAW, Endpoint, Variant, console
from .measure import RunResult, measure_run


@dataclass(frozen=True)
class Comparison:
    key: str  # the results' key, and the flag that picks it (--keep-extra for keep_extra)
    base: Variant
    other: Variant
    target: float  # other's CPU a message, at most this many times the base's

    @property
    def ratio(self) -> str:
        return f"{self.other.name}_vs_{self.base.name}"


ENVELOPES = Comparison("envelopes", RAW, Variant("sns", envelope="sns"), 1.2)
KEEP_EXTRA = Comparison(
    "keep_extra",
    Variant("counted", extra=True),
    Variant(
        "kept", extra=True, flags=("--keep-extra",),
        environment=(("LOGINETL_MASK_EXTRA", EXTRA_MASKED),),
    ),
    1.2,
)  # fmt: skip
COMPARISONS = (ENVELOPES, KEEP_EXTRA)


def measure_comparison(
    comparison: Comparison, sqs, endpoint: Endpoint, database: str, environment: dict,
    args: argparse.Namespace,
) -> dict:  # fmt: skip
    n = args.messages[0]
    base, other = comparison.base, comparison.other
    runs: dict[str, list[RunResult]] = {base.name: [], other.name: []}
    for round_number in range(args.repeat):
        order = (base, other) if round_number % 2 == 0 else (other, base)
        for variant in order:
            console.print(f"[bold]{n:,} messages, {variant.name}, round {round_number + 1}[/]")
            runs[variant.name].append(measure_run(
                sqs, endpoint, database, environment, n, args, args.concurrency, variant
            ))  # fmt: skip
    ratios = [
        theirs.rate.ms_per_message / ours.rate.ms_per_message
        for ours, theirs in zip(runs[base.name], runs[other.name], strict=True)
    ]
    ratio = sorted(ratios)[(len(ratios) - 1) // 2]
    problems = [p for results in runs.values() for result in results for p in result.problems]
    return {
        "messages": n,
        "cpu_ms_per_message": {
            name: [round(r.rate.ms_per_message, 4) for r in results]
            for name, results in runs.items()
        },
        comparison.ratio: [round(r, 3) for r in ratios],
        f"median_{comparison.ratio}": round(ratio, 3),
        "target": {
            f"{other.name} ≤ {comparison.target} × {base.name} CPU/message": (
                ratio <= comparison.target
            )
        },
        "problems": problems,
    }


def print_comparison(comparison: Comparison, result: dict) -> None:
    base, other = comparison.base.name, comparison.other.name
    shown = Table(title=f"CPU per message, {result['messages']:,} messages a run")
    for column in ("round", f"{base} ms", f"{other} ms", f"{other} / {base}"):
        shown.add_column(column, justify="right")
    cpu = result["cpu_ms_per_message"]
    for number, ratio in enumerate(result[comparison.ratio]):
        shown.add_row(str(number + 1), f"{cpu[base][number]:.4f}",
                      f"{cpu[other][number]:.4f}", f"{ratio:.3f}")  # fmt: skip
    console.print(shown)
    median = result[f"median_{comparison.ratio}"]
    met = "met" if median <= comparison.target else "[red]NOT met[/]"
    console.print(f"median {other}/{base} {median:.3f} (≤ {comparison.target}: {met})")
    for problem in result["problems"]:
        console.print(f"[red]{problem}[/]")
