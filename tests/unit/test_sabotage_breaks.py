"""The sabotage script's breaks stay true to the code and the guarantees page: each one's
snippet occurs exactly once in its file (a break that no longer applies proves nothing), its
replacement compiles, and every guarantees row has a break."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.scripts import script_module

ROOT = Path(__file__).resolve().parents[2]
sabotage = script_module("sabotage")


@pytest.mark.parametrize("brk", sabotage.BREAKS, ids=lambda brk: brk.description[:60])
def test_each_break_applies_once_and_compiles(brk):
    assert sabotage.applies(brk, ROOT) is None
    path = ROOT / "loginetl" / brk.file
    compile(path.read_text().replace(brk.find, brk.replace, 1), str(path), "exec")


def test_every_guarantee_has_a_break_and_every_break_a_guarantee():
    problems, _notes = sabotage.coverage(list(sabotage.BREAKS))
    assert problems == []
