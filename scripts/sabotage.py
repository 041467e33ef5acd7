"""Show that every guarantee in docs/guarantees.md is load-bearing: break each one on purpose in
a scratch copy of the tree and run the tests the page cites for it; they must fail.

    .venv/bin/python scripts/sabotage.py             # every break, one after another
    .venv/bin/python scripts/sabotage.py --list      # the breaks, and whether each still applies
    .venv/bin/python scripts/sabotage.py --only SIGTERM --json
    .venv/bin/python scripts/sabotage.py --baseline  # first check the cited tests pass unbroken

The breaks are data (scripts/sabotage_breaks.py, scripts/sabotage_kafka.py for the Kafka
source, and scripts/sabotage_privacy.py for the privacy guarantees). Each is applied to a fresh
copy of the files git tracks, never to this tree; a snippet not found exactly once makes its
break "stale" (the code moved). The tests run in the copy with PYTHONPATH set to it, so the
tests' imports and the `python -m loginetl` processes they start both use the sabotaged package.
Every cited test of a break runs (no stopping at the first failure), so each break records which
of its tests failed and which passed; then each test cited by a break or by the docs (the
"proved by" column of docs/guarantees.md, the "caught by" column of docs/testing.md) is judged
across all breaks: it carries weight when some break made it fail. Exit 0 only if every break
was caught, none is stale, and every cited test judged carries weight (with --only: the tests
its breaks cite).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sabotage_kafka  # noqa: E402
import sabotage_privacy  # noqa: E402
from sabotage_breaks import BREAKS as DELIVERY_BREAKS  # noqa: E402
from sabotage_breaks import Break  # noqa: E402
from sabotage_weight import Weight, cited_in, matches, table_rows, weigh  # noqa: E402

BREAKS = DELIVERY_BREAKS + sabotage_privacy.BREAKS + sabotage_kafka.BREAKS

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
# -v: one line per test as it ends (its outcome survives a timeout); -rfE: the failures' reasons.
PYTEST = ["-m", "pytest", "-v", "-p", "no:cacheprovider", "-rfE"]
OUTCOME_LINE = re.compile(r"^(\S+\.py::.+?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
SUMMARY_LINE = re.compile(
    r"^(FAILED|ERROR) (\S+(?:\[[^\]]*\])?)(?: - (.*))?$"
)  # ids may hold spaces
# A test's section header: pytest pads the name with underscores to the line's width, down to
# one on each side for a long (parametrized) name.
SECTION_LINE = re.compile(r"^_+ (?:ERROR at \w+ of )?(\S+) _+$")
err = Console(stderr=True)


@dataclass
class Outcome:
    guarantee: str
    description: str
    tests: list[str]
    status: str  # caught, missed, stale, error, timeout
    failed: list[str] = field(default_factory=list)  # node ids that failed under the break
    passed: list[str] = field(default_factory=list)  # node ids that passed under it anyway
    reasons: list[str] = field(default_factory=list)  # why each failed (its first error line)
    details: list[str] = field(default_factory=list)  # what else went wrong, if anything
    seconds: float = 0.0

    @property
    def caught(self) -> bool:
        return self.status == "caught"


# The scratch copy ----------------------------------------------------------------------------


def tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in listing.split("\0") if name]


def scratch_copy(into: Path) -> Path:
    """The tracked files as they are in the working tree now (missing ones skipped)."""
    root = into / "tree"
    for name in tracked_files():
        source = REPO / name
        if source.is_file():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return root


def applies(brk: Break, root: Path) -> str | None:
    """None if the snippet occurs exactly once in root's copy of the file, else why not."""
    path = root / "loginetl" / brk.file
    if not path.is_file():
        return f"stale: loginetl/{brk.file} does not exist"
    found = path.read_text().count(brk.find)
    return None if found == 1 else f"stale: snippet found {found} times in loginetl/{brk.file}"


def apply(brk: Break, root: Path) -> str | None:
    """Apply the break in root; None if applied, else why not (stale, or it does not compile)."""
    problem = applies(brk, root)
    if problem:
        return problem
    path = root / "loginetl" / brk.file
    path.write_text(path.read_text().replace(brk.find, brk.replace, 1))
    try:
        compile(path.read_text(), str(path), "exec")
    except SyntaxError as error:
        return f"error: the break does not compile: {error}"
    return None


def copy_env(root: Path) -> dict:
    return os.environ | {"PYTHONPATH": str(root)}


def check_pythonpath_wins(root: Path) -> str:
    """Where a process started with the tests' environment (from another folder) finds
    loginetl: it must be the scratch copy, not the editable install pointing here."""
    found = subprocess.run(
        [str(PYTHON), "-c", "import loginetl; print(loginetl.__file__)"],
        cwd=root.parent, env=copy_env(root), capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not Path(found).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"loginetl imports from {found}, not from the scratch copy {root}")
    return found


# Running the cited tests ---------------------------------------------------------------------


def run_pytest(root: Path, tests: list[str], timeout: float, skip: set[str] = frozenset()):
    """(exit code or None on timeout, [(node id, reason)] failed, [node id] passed, output
    tail, seconds); `skip`: node ids to deselect (they fail without any break)."""
    command = [str(PYTHON), *PYTEST, *tests, *(f"--deselect={test}" for test in sorted(skip))]
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=root, env=copy_env(root), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        code = None
        kill_group(process.pid)
        output, _ = process.communicate()
    kill_group(process.pid)  # what the tests started and left running (loginetl processes)
    tail = output.strip().splitlines()[-5:]
    return code, failures(output), passes(output), tail, time.monotonic() - started


def passes(output: str) -> list[str]:
    """The node ids that passed, from -v's line per test (a test that passed and then failed
    in its teardown is not among them)."""
    outcomes: dict[str, set[str]] = {}
    for line in output.splitlines():
        match = OUTCOME_LINE.match(line)
        if match:
            outcomes.setdefault(match.group(1), set()).add(match.group(2))
    return [test for test, seen in outcomes.items() if seen == {"PASSED"}]


def failures(output: str) -> list[tuple[str, str]]:
    """[(node id, why)] from the short summary; why from the summary line, else the first
    `E   ` line of the test's section (the summary drops it when the line is too long)."""
    errors: dict[str, list[str]] = {}
    section = None
    for line in output.splitlines():
        header = SECTION_LINE.match(line)
        if header:
            section = header.group(1)
        elif section and line.startswith("E  "):
            errors.setdefault(section, []).append(line[1:].strip())
    first_error = {
        name: next((e for e in lines if e.startswith("assert ") or "Error: " in e), lines[0])
        for name, lines in errors.items()
    }
    failed = []
    for line in output.splitlines():
        match = SUMMARY_LINE.match(line.strip())
        if match:
            test, why = match.group(2), (match.group(3) or "").strip()
            name = test.rsplit("::", 1)[-1]
            failed.append((test, why or first_error.get(name, "")))
    return failed


def kill_group(pgid: int) -> None:
    """The session started for one pytest run (its own process group, made for it)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def judge(brk: Break, code, failed, passed, tail, seconds: float,
          baseline_failed: set[str]) -> Outcome:  # fmt: skip
    outcome = Outcome(brk.guarantee, brk.description, list(brk.tests), "missed", seconds=seconds)
    genuine = [(test, why) for test, why in failed if test not in baseline_failed]
    outcome.failed = [test for test, _ in genuine]
    outcome.reasons = [why for _, why in genuine]
    outcome.passed = [test for test in passed if test not in outcome.failed]
    if code is None:
        outcome.status, outcome.details = "timeout", ["pytest timed out"]
    elif code == 1 and genuine:
        outcome.status = "caught"
    elif code not in (0, 1):  # interrupted, collection or usage error, no tests collected
        outcome.status = "error"
        outcome.details += [f"pytest exit code {code}"] + tail
    elif code == 1:
        outcome.details += ["only tests that fail without the break failed"]
    if baseline_failed & set(brk.tests):
        outcome.details += [f"not run (fails unbroken): {test}" for test in
                            sorted(baseline_failed & set(brk.tests))]  # fmt: skip
    return outcome


def sabotage(brk: Break, timeout: float, baseline_failed: set[str]) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="loginetl-sabotage-") as folder:
        root = scratch_copy(Path(folder))
        problem = apply(brk, root)
        if problem:
            status = problem.split(":", 1)[0]
            return Outcome(
                brk.guarantee, brk.description, list(brk.tests), status, details=[problem]
            )
        ran = run_pytest(root, list(brk.tests), timeout, baseline_failed - {"(baseline)"})
        return judge(brk, *ran, baseline_failed)


def baseline(breaks: list[Break], timeout: float) -> set[str]:
    """Run every cited test once on an unbroken copy; returns the node ids that fail anyway."""
    tests = list(dict.fromkeys(test for brk in breaks for test in brk.tests))
    with tempfile.TemporaryDirectory(prefix="loginetl-sabotage-") as folder:
        root = scratch_copy(Path(folder))
        code, failed, _passed, tail, seconds = run_pytest(root, tests, timeout * 2)
    if code is None:
        failed.append(("(baseline)", "timed out"))
    err.print(f"baseline: {len(tests)} cited tests, exit {code}, {seconds:.0f} s")
    for test, why in failed:
        err.print(f"[red]baseline failure[/] {escape(test)}: {escape(why)}")
    if code not in (0, 1):
        err.print("\n".join(escape(line) for line in tail))
    return {test for test, _ in failed} | ({"(baseline)"} if code not in (0, 1, None) else set())


# The guarantees page's table, to check every row has a break ------------------------------------------


def readme_rows() -> dict[str, set[str]]:
    """Each Guarantees row's promise -> the node ids its "proved by" column names."""
    text = (REPO / "docs" / "guarantees.md").read_text()
    section = text.split("# Guarantees", 1)[-1].split("\n## ", 1)[0]
    return {cells[0]: cited_in(cells[2]) for cells in table_rows(section) if len(cells) >= 3}


def coverage(breaks: list[Break]) -> tuple[list[str], list[str]]:
    """(problems: a guarantees row without a break, a break whose row is gone; notes: the page
    cites tests for a row that its break does not run)."""
    rows = readme_rows()
    guarantees = {brk.guarantee for brk in breaks}
    problems = [f"no break for the guarantees row: {row}" for row in rows if row not in guarantees]
    notes = []
    for brk in breaks:
        if brk.guarantee not in rows:
            problems.append(f"stale: not a guarantees row (reworded?): {brk.guarantee}")
        elif unrun := [t for t in rows[brk.guarantee] if not any(matches(t, e) for e in brk.tests)]:
            missing = ", ".join(sorted(unrun))
            notes.append(f"the guarantees page also cites {missing} for: {brk.description}")
    return problems, notes


# Output --------------------------------------------------------------------------------------


def short(test: str) -> str:
    return test.removeprefix("tests/")


def show_table(outcomes: list[Outcome], title: str) -> None:
    table = Table(title=title, show_lines=True)
    for name, style in (("guarantee", None), ("break", None), ("tests that failed", "cyan"),
                        ("caught", None)):  # fmt: skip
        table.add_column(name, style=style, overflow="fold")
    for outcome in outcomes:
        pairs = zip(outcome.failed, outcome.reasons)
        failed = "\n".join(f"{escape(short(t))}\n  [dim]{escape(why[:120])}[/]" for t, why in pairs)
        failed = failed or "-"
        if outcome.details:
            failed += "\n" + "\n".join(f"[dim]{escape(d)}[/]" for d in outcome.details[-3:])
        verdict = "[green]yes[/]" if outcome.caught else f"[red]no[/] ({outcome.status})"
        table.add_row(escape(outcome.guarantee), escape(outcome.description), failed, verdict)
    Console(width=max(Console().width, 160)).print(table)


def show_weights(weights: list[Weight]) -> None:
    table = Table(title="cited tests: does some break make each fail?", show_lines=True)
    for name in ("cited test", "cited in", "ran under", "failed under", "weight"):
        table.add_column(name, overflow="fold")
    for weight in weights:
        failed = "\n".join(escape(description) for description in weight.failed_under) or "-"
        verdict = "[green]yes[/]" if weight.carries_weight else f"[red]no[/] ({weight.verdict})"
        table.add_row(
            escape(short(weight.test)), "\n".join(weight.cited_in),
            f"{len(weight.ran_under)} breaks", failed, verdict,
        )  # fmt: skip
    Console(width=max(Console().width, 160)).print(table)


def show_list(breaks: list[Break]) -> None:
    with tempfile.TemporaryDirectory(prefix="loginetl-sabotage-") as folder:
        root = scratch_copy(Path(folder))
        table = Table(title="breaks", show_lines=True)
        for name in ("guarantee", "break", "file", "cited tests", "applies"):
            table.add_column(name, overflow="fold")
        for brk in breaks:
            problem = applies(brk, root)
            table.add_row(
                escape(brk.guarantee), escape(brk.description), brk.file,
                "\n".join(short(test) for test in brk.tests),
                "[green]yes[/]" if problem is None else f"[red]{escape(problem)}[/]",
            )  # fmt: skip
    Console(width=max(Console().width, 160)).print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    parser.add_argument("--only", metavar="SUBSTRING", help="breaks whose guarantee contains it")
    parser.add_argument("--list", action="store_true", help="list the breaks without running")
    parser.add_argument(
        "--baseline", action="store_true",
        help="first run the cited tests unbroken, and deselect those that fail there",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600, help="seconds per break")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    breaks = [b for b in BREAKS if not args.only or args.only.lower() in b.guarantee.lower()]
    if not breaks:
        err.print(f"no break's guarantee contains {args.only!r}")
        return 2
    problems, notes = coverage(list(BREAKS))
    for line in problems + notes:
        err.print(f"[yellow]coverage:[/] {escape(line)}")
    if args.list:
        show_list(breaks)
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="loginetl-sabotage-") as folder:
        found = check_pythonpath_wins(scratch_copy(Path(folder)))
    err.print(f"[dim]in a scratch copy, loginetl imports from {found}[/]")
    baseline_failed = baseline(breaks, args.timeout) if args.baseline else set()
    outcomes = []
    for number, brk in enumerate(breaks, 1):
        err.print(f"[{number}/{len(breaks)}] {escape(brk.description)}")
        outcome = sabotage(brk, args.timeout, baseline_failed)
        outcomes.append(outcome)
        err.print(f"    {outcome.status} ({outcome.seconds:.0f} s)")
    elapsed = time.monotonic() - started
    every = all(outcome.caught for outcome in outcomes) and "(baseline)" not in baseline_failed
    weights = weigh(breaks, outcomes, everything=not args.only)
    weightless = [weight.test for weight in weights if not weight.carries_weight]
    if args.json:
        print(json.dumps({"outcomes": [asdict(o) | {"caught": o.caught} for o in outcomes],
                          "tests": [asdict(w) | {"carries_weight": w.carries_weight,
                                                 "verdict": w.verdict} for w in weights],
                          "weightless": weightless,
                          "coverage_problems": problems, "coverage_notes": notes,
                          "baseline_failed": sorted(baseline_failed),
                          "seconds": round(elapsed, 1), "all_caught": every},
                         indent=2))  # fmt: skip
    else:
        caught = sum(outcome.caught for outcome in outcomes)
        show_table(outcomes, f"sabotage: {caught}/{len(outcomes)} breaks caught in {elapsed:.0f} s")
        show_weights(weights)
    for test in weightless:
        err.print(f"[red]carries no weight:[/] {escape(short(test))}")
    return 0 if every and not problems and not weightless else 1


if __name__ == "__main__":
    sys.exit(main())
