"""The bench at real round-trip times (python -m benchmarks --rtt): loopback hides the ~20 ms an
in-region SQS call takes, so for each RTT a TcpProxy (tests/support/faults.py) delaying each direction
by half of it stands between the consumers and the SQS server (seeding goes around it). On
freshly seeded queues of --messages N each: the bare consumer at --concurrency threads and at
16, `loginetl run` with its defaults (adaptive receivers), and with each --fixed concurrency.
Reported: msg/s, the defaults against the best fixed --concurrency and against bare at
--concurrency threads, and CPU per message (each process's own, from wait4) of loginetl's
defaults against the bare consumer at --concurrency threads; the round-trip targets met or not.

With --repeat R, R rounds, each the bare consumer at --concurrency threads, the defaults and
every --fixed concurrency, one after the other: the runs of a round share the machine's mood
of the moment (on a shared 2-core machine one consumer's rate or CPU per message moves by up
to 40% from one round to the next, the runs of a round together). Reported: each consumer's
median rate; the best fixed concurrency is the one with the highest median, and each ratio
(defaults against it, against bare, CPU against bare) is the median of the rounds' own
ratios, every round's listed beside it."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from tests.support.faults import TcpProxy

from .environment import Endpoint, Rate, console
from .measure import RunResult, measure_bare, measure_run, median

BARE_WIDE = 16  # the adaptive receivers' ceiling (loginetl/pipeline/adapting.py)
DEFAULTS_VS_BEST = 0.9  # at 20 and 50 ms, defaults >= 0.9 x the best fixed
DEFAULTS_VS_BARE = 0.9  # at 0 ms, defaults >= 0.9 x bare at the same thread count
CPU_VS_BARE = 1.2  # loginetl's CPU per message <= 1.2 x the bare consumer's


@dataclass
class RttResult:
    rtt_ms: int
    pairs: list[tuple[Rate, RunResult]]  # (bare at --concurrency, defaults), one per round
    wide: Rate  # bare at BARE_WIDE threads
    fixed: dict[int, list[RunResult]]  # --concurrency -> its run in each round

    def fixed_median(self, concurrency: int) -> RunResult:
        return median(self.fixed[concurrency], key=lambda run: run.rate.per_second)

    @property
    def best_fixed(self) -> int:
        return max(self.fixed, key=lambda n: self.fixed_median(n).rate.per_second)

    @property
    def best_ratios(self) -> list[float]:
        """Each round's defaults over its run at the best fixed concurrency."""
        best = self.fixed[self.best_fixed]
        return [run.rate.per_second / fixed.rate.per_second
                for (_, run), fixed in zip(self.pairs, best)]  # fmt: skip

    @property
    def bare_ratios(self) -> list[float]:
        return [run.rate.per_second / bare.per_second for bare, run in self.pairs]

    @property
    def bare(self) -> Rate:
        return median([bare for bare, _ in self.pairs], key=lambda rate: rate.per_second)

    @property
    def defaults(self) -> RunResult:
        return median([run for _, run in self.pairs], key=lambda run: run.rate.per_second)

    @property
    def cpu_ratios(self) -> list[float]:
        """Each pair's CPU per message, defaults over bare."""
        return [run.rate.ms_per_message / bare.ms_per_message for bare, run in self.pairs]


@contextmanager
def behind_latency(endpoint: Endpoint, rtt_ms: int):
    """The endpoint as seen through a proxy adding `rtt_ms` to every round trip."""
    if not rtt_ms:
        yield endpoint
        return
    parts = urlsplit(endpoint.url)
    proxy = TcpProxy(parts.hostname, parts.port or 80, delay=rtt_ms / 2000)
    try:
        yield Endpoint(f"http://127.0.0.1:{proxy.port}", endpoint.pid)
    finally:
        proxy.cut()


def measure_rtts(sqs, endpoint: Endpoint, database: str, environment: dict, args) -> list:
    n = args.messages[0]
    found = []
    for rtt in args.rtt:
        console.print(f"[bold]round trip {rtt} ms[/]")
        with behind_latency(endpoint, rtt) as far:
            pairs, fixed = [], {c: [] for c in args.fixed}
            for _ in range(args.repeat):
                pairs.append(
                    (
                        measure_bare(sqs, far, n, args, args.concurrency),
                        measure_run(sqs, far, database, environment, n, args, None),
                    )
                )
                for c in args.fixed:
                    fixed[c].append(measure_run(sqs, far, database, environment, n, args, c))
            wide = measure_bare(sqs, far, n, args, BARE_WIDE)
        found.append(RttResult(rtt, pairs, wide, fixed))
    return found


def rtt_results(args, endpoint: str, found: list[RttResult]) -> dict:
    rows = [rtt_row(result, args.concurrency) for result in found]
    return {
        "command": " ".join([".venv/bin/python", "-m", "benchmarks", *sys.argv[1:]]),
        "endpoint": endpoint,
        "loginetl_revision": args.revision,
        "messages": args.messages[0],
        "batch_size": args.batch_size,
        "rtts": rows,
        "targets": [target for row in rows for target in rtt_targets(row, args.concurrency)],
        "checks_passed": all(row["checks_passed"] for row in rows),
    }


def rtt_row(result: RttResult, threads: int) -> dict:
    best = result.best_fixed
    defaults = result.defaults.rate
    bare = result.bare
    runs = [run for _, run in result.pairs] + [run for c in result.fixed for run in result.fixed[c]]
    medians = {c: result.fixed_median(c) for c in result.fixed}
    return {
        "rtt_ms": result.rtt_ms,
        "rounds": len(result.pairs),
        "bare_per_second": {
            threads: round(bare.per_second, 1),
            BARE_WIDE: round(result.wide.per_second, 1),
        },  # fmt: skip
        "defaults_per_second": round(defaults.per_second, 1),
        "fixed_per_second": {c: round(run.rate.per_second, 1) for c, run in medians.items()},
        "best_fixed": best,
        "defaults_vs_best_fixed": round(median(result.best_ratios, float), 3),  # the median round's
        "defaults_vs_best_fixed_rounds": [round(ratio, 3) for ratio in result.best_ratios],
        "defaults_vs_bare": round(median(result.bare_ratios, float), 3),
        "defaults_vs_bare_rounds": [round(ratio, 3) for ratio in result.bare_ratios],
        "cpu_ms_per_message": {  # the medians of the rounds
            "defaults": round(median([r.rate.ms_per_message for _, r in result.pairs], float), 3),
            "bare": round(median([b.ms_per_message for b, _ in result.pairs], float), 3),
            **{f"fixed_{c}": round(run.rate.ms_per_message, 3) for c, run in medians.items()},
        },
        "cpu_vs_bare": round(median(result.cpu_ratios, float), 3),  # the median pair's
        "cpu_vs_bare_rounds": [round(ratio, 3) for ratio in result.cpu_ratios],
        "checks_passed": not any(run.problems for run in runs),
        "problems": [problem for run in runs for problem in run.problems],
    }


def rtt_targets(row: dict, threads: int) -> list[dict]:
    at = f"at {row['rtt_ms']} ms"
    if row["rtt_ms"]:
        name, value, limit = f"defaults ≥ {DEFAULTS_VS_BEST} × best fixed {at}", (
            row["defaults_vs_best_fixed"]), DEFAULTS_VS_BEST  # fmt: skip
    else:
        name, value, limit = f"defaults ≥ {DEFAULTS_VS_BARE} × bare {threads} threads {at}", (
            row["defaults_vs_bare"]), DEFAULTS_VS_BARE  # fmt: skip
    cpu = f"CPU/message ≤ {CPU_VS_BARE} × bare {threads} threads {at}"
    return [
        {"target": name, "value": value, "met": value >= limit},
        {"target": cpu, "value": row["cpu_vs_bare"], "met": row["cpu_vs_bare"] <= CPU_VS_BARE},
    ]


def cpu_cell(row: dict) -> str:
    cpu = row["cpu_ms_per_message"]
    cell = f"{cpu['defaults']:.3f} / {cpu['bare']:.3f} = {row['cpu_vs_bare']:.2f}"
    return cell + rounds_of(row, "cpu_vs_bare_rounds")


def rounds_of(row: dict, key: str) -> str:
    """Each round's ratio, in brackets, when there was more than one round."""
    if row["rounds"] < 2:
        return ""
    return " (" + " ".join(f"{ratio:.2f}" for ratio in row[key]) + ")"


def print_rtt_tables(result: dict) -> None:
    out = Console()
    if not out.is_terminal:  # piped: wide enough not to wrap
        out = Console(width=160)
    rows = result["rtts"]
    threads = sorted(rows[0]["bare_per_second"])
    fixed = sorted(rows[0]["fixed_per_second"])
    table = Table(
        title=f"loginetl {result['loginetl_revision']} at real round trips, "
        f"{result['messages']:,} messages, msg/s",
        title_justify="left",
    )
    columns = ["RTT", *(f"bare {t}" for t in threads), "defaults",
               *(f"--concurrency {c}" for c in fixed), "defaults/best", "defaults/bare",
               "CPU ms/msg run / bare", "checks"]  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name == "checks" else "right")
    for row in rows:
        table.add_row(
            f"{row['rtt_ms']} ms",
            *(f"{row['bare_per_second'][t]:,.0f}" for t in threads),
            f"{row['defaults_per_second']:,.0f}",
            *(f"{row['fixed_per_second'][c]:,.0f}" for c in fixed),
            f"{row['defaults_vs_best_fixed']:.2f} vs {row['best_fixed']}"
            + rounds_of(row, "defaults_vs_best_fixed_rounds"),
            f"{row['defaults_vs_bare']:.2f}" + rounds_of(row, "defaults_vs_bare_rounds"),
            cpu_cell(row),
            "ok" if row["checks_passed"] else "[red]" + "; ".join(row["problems"]) + "[/]",
        )
    rounds = rows[0]["rounds"]
    table.caption = (
        f"bare N: receive + DeleteMessageBatch from N threads, no database; defaults/bare: "
        f"against bare {threads[0]}; CPU: each process's own, start-up included"
        + (f"; rates: medians of {rounds} rounds (each a bare {threads[0]}, the defaults and each"
           f" --concurrency); ratios: the median of the rounds' own (each round's in brackets)"
           if rounds > 1 else "")
    )  # fmt: skip
    table.caption_justify = "left"
    out.print(table)
    targets = Table(title="targets", title_justify="left")
    for name in ("target", "measured", ""):
        targets.add_column(name)
    for item in result["targets"]:
        verdict = "[green]met[/]" if item["met"] else "[red]not met[/]"
        targets.add_row(item["target"], f"{item['value']:g}", verdict)
    out.print(targets)
