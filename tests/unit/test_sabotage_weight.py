"""scripts/sabotage.py judges each cited test across all breaks (scripts/sabotage_weight.py): a
test carries weight only when some break made it fail; one that every break that ran it left
passing, or that no break runs although the docs cite it, is reported and fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.scripts import script_module

ROOT = Path(__file__).resolve().parents[2]
sabotage = script_module("sabotage")
weight = script_module("sabotage_weight")

CAUGHT = "tests/test_a.py::test_caught"
IDLE = "tests/test_a.py::test_idle"
DOCS_ONLY = "tests/test_b.py::test_cited_by_the_docs_only"
GUARANTEES = f"""# Guarantees

| promise | how | proved by |
|---|---|---|
| It holds. | somehow | `test_a.py::test_caught`, `::test_idle` |
| It also holds. | otherwise | `{DOCS_ONLY.removeprefix("tests/")}` |
"""
TESTING = """# Testing

| promise | break | caught by |
|---|---|---|
| It holds. | broken | `test_a.py::test_caught` |

| module | mutants |
|---|---|
| `loginetl/test_like.py` | 3 |
"""


@pytest.fixture
def repo(tmp_path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guarantees.md").write_text(GUARANTEES)
    (tmp_path / "docs" / "testing.md").write_text(TESTING)
    return tmp_path


def outcome(description: str, failed: list[str], passed: list[str]):
    return sabotage.Outcome("It holds.", description, [], "caught", failed=failed, passed=passed)


def brk(description: str, *tests: str):
    return sabotage.Break("It holds.", description, "x.py", "a", "b", tests)


def test_only_a_test_some_break_made_fail_carries_weight(repo):
    breaks = [brk("one", CAUGHT, IDLE), brk("two", CAUGHT, IDLE)]
    outcomes = [
        outcome("one", [f"{CAUGHT}[plain]"], [f"{CAUGHT}[partitioned]", IDLE]),
        outcome("two", [], [f"{CAUGHT}[plain]", f"{CAUGHT}[partitioned]", IDLE]),
    ]
    found = {w.test: w for w in weight.weigh(breaks, outcomes, everything=True, repo=repo)}
    assert set(found) == {CAUGHT, IDLE, DOCS_ONLY}
    assert found[CAUGHT].carries_weight and found[CAUGHT].failed_under == ["one"]
    assert found[CAUGHT].ran_under == ["one", "two"]
    assert found[CAUGHT].cited_in == ["docs/guarantees.md", "docs/testing.md", weight.BREAKS_FILE]
    assert not found[IDLE].carries_weight and found[IDLE].verdict == "no break makes it fail"
    assert found[DOCS_ONLY].verdict == "no break runs it"
    assert found[DOCS_ONLY].cited_in == ["docs/guarantees.md"]


def test_with_only_some_breaks_only_their_tests_are_judged(repo):
    breaks = [brk("one", "tests/test_a.py")]  # a whole file: its tests are related
    outcomes = [outcome("one", [CAUGHT], [IDLE])]
    found = {w.test: w for w in weight.weigh(breaks, outcomes, everything=False, repo=repo)}
    assert set(found) == {"tests/test_a.py", CAUGHT, IDLE}
    assert found["tests/test_a.py"].carries_weight and found[CAUGHT].carries_weight
    assert not found[IDLE].carries_weight


def test_a_node_matches_its_cases_and_a_file_its_tests_never_a_longer_name():
    assert weight.matches(f"{CAUGHT}[plain]", CAUGHT)
    assert weight.matches(CAUGHT, "tests/test_a.py")
    assert not weight.matches(f"{CAUGHT}_too", CAUGHT)
    assert not weight.matches("tests/test_a.py", CAUGHT)


def test_passes_reads_the_verbose_line_of_each_test():
    output = "\n".join(
        [
            "collecting ... collected 4 items",
            "",
            "tests/test_a.py::test_p[a b] FAILED                 [ 25%]",
            "tests/test_a.py::test_p[c] PASSED                   [ 50%]",
            "tests/test_a.py::test_s SKIPPED (why)               [ 75%]",
            "tests/test_a.py::test_torn PASSED                   [100%]",
            "tests/test_a.py::test_torn ERROR                    [100%]",
            "FAILED tests/test_a.py::test_p[a b] - AssertionError: assert 'a b' == 'c'",
        ]
    )
    assert sabotage.passes(output) == ["tests/test_a.py::test_p[c]"]


def test_the_docs_citations_are_read_from_both_pages():
    cited = weight.page_citations(ROOT)
    unmask_key = (
        "tests/test_cli_privacy.py::"
        "test_unmask_reads_a_row_under_the_key_it_names_whatever_else_the_ring_holds"
    )
    assert cited[unmask_key] == {"docs/guarantees.md", "docs/testing.md"}
    assert all((ROOT / test.split("::", 1)[0]).is_file() for test in cited), cited
