"""Which cited tests carry weight, for `scripts/sabotage.py`.

Each break records the cited tests that failed under it and those that passed anyway. Here each
test cited by a break (scripts/sabotage_breaks.py) or by the docs (the "proved by" column of
docs/guarantees.md, the "caught by" column of docs/testing.md) is judged across all breaks: it
carries weight when at least one break made it fail. A test that no break makes fail, or that
no break runs, proves nothing where it is cited: add a break it catches, or stop citing it.

A citation is a node id under tests/ (`test_x.py::test_y`, its parametrized cases included), a
`::test_y` of the file named just before it in the same cell, or a whole file (`test_x.py`:
any of its tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = ("docs/guarantees.md", "docs/testing.md")  # the third column of their tables cites
BREAKS_FILE = "scripts/sabotage_breaks.py"
_SEPARATOR = re.compile(r"\|?[-:| ]+\|?")


def cited_in(cell: str) -> set[str]:
    """The node ids a table cell cites, each under tests/."""
    ids, current = set(), ""
    for cited in re.findall(r"`([^`]*test_[^`]*)`", cell):
        if cited.startswith("::"):
            cited = current + cited
        current = cited.split("::", 1)[0]
        ids.add("tests/" + cited)
    return ids


def table_rows(text: str) -> list[list[str]]:
    """The cells of each body row of the markdown tables in `text`: neither a header (the row
    above a separator) nor a separator."""
    lines = [line.strip() for line in text.splitlines()]
    rows = []
    for number, line in enumerate(lines):
        if not line.startswith("|") or _SEPARATOR.fullmatch(line):
            continue
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if following.startswith("|") and _SEPARATOR.fullmatch(following):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def page_citations(repo: Path = REPO) -> dict[str, set[str]]:
    """Each test the docs cite -> the pages citing it."""
    cited: dict[str, set[str]] = {}
    for page in PAGES:
        for cells in table_rows((repo / page).read_text()):
            for test in cited_in(cells[2]) if len(cells) >= 3 else ():
                cited.setdefault(test, set()).add(page)
    return cited


def matches(node: str, cited: str) -> bool:
    """Whether pytest node id `node` is (a case of, or a test in) the cited `cited`."""
    return node == cited or node.startswith((cited + "[", cited + "::"))


def related(one: str, other: str) -> bool:
    return matches(one, other) or matches(other, one)


@dataclass
class Weight:
    test: str  # as cited
    cited_in: list[str]  # the pages, and scripts/sabotage_breaks.py when a break runs it
    ran_under: list[str] = field(default_factory=list)  # the breaks that ran it
    failed_under: list[str] = field(default_factory=list)  # the breaks that made it fail

    @property
    def carries_weight(self) -> bool:
        return bool(self.failed_under)

    @property
    def verdict(self) -> str:
        if self.carries_weight:
            return "carries weight"
        return "no break runs it" if not self.ran_under else "no break makes it fail"


def weigh(
    breaks: Sequence, outcomes: Sequence, everything: bool, repo: Path = REPO
) -> list[Weight]:
    """Each cited test's weight over these breaks and their outcomes (in the same order; an
    outcome has .description, .failed and .passed node ids). `everything`: every break ran,
    so every test the docs cite is judged; else only those related to these breaks' tests."""
    cited: dict[str, set[str]] = {}
    for brk in breaks:
        for test in brk.tests:
            cited.setdefault(test, set()).add(BREAKS_FILE)
    entries = [test for brk in breaks for test in brk.tests]
    for test, pages in page_citations(repo).items():
        if everything or any(related(test, entry) for entry in entries):
            cited.setdefault(test, set()).update(pages)
    weights = []
    for test in sorted(cited):
        weight = Weight(test, sorted(cited[test]))
        for outcome in outcomes:
            if _any_match(outcome.failed + outcome.passed, test):
                weight.ran_under.append(outcome.description)
            if _any_match(outcome.failed, test):
                weight.failed_under.append(outcome.description)
        weights.append(weight)
    return weights


def _any_match(nodes: Iterable[str], cited: str) -> bool:
    return any(matches(node, cited) for node in nodes)
