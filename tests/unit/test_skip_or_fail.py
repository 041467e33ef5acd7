"""A test whose server or tool is missing skips on a developer's machine and fails under CI
(tests/support/ci.py), and the suite skips through that helper only: a bare pytest.skip,
skipif or importorskip would pass a guarantee under CI that nothing checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.ci import skip_or_fail, under_ci

TESTS = Path(__file__).resolve().parents[1]
BARE_SKIP = re.compile(r"pytest\.(skip[(.]|mark\.skip|importorskip)|skipif")


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_under_ci_it_fails_saying_why(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert under_ci()
    with pytest.raises(pytest.fail.Exception, match=r"no server here.*CI is set"):
        skip_or_fail("no server here")


@pytest.mark.parametrize("value", [None, "", "0", "false", "no"])
def test_elsewhere_it_skips_saying_why(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not under_ci()
    with pytest.raises(pytest.skip.Exception, match=r"^no server here$"):
        skip_or_fail("no server here")


def test_the_suite_skips_only_through_skip_or_fail():
    helper = TESTS / "support" / "ci.py"
    bare = [
        f"{path.relative_to(TESTS)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in (helper, Path(__file__).resolve())
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BARE_SKIP.search(line)
    ]
    assert bare == []
