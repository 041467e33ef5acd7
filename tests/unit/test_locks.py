"""The locks serve what pyproject.toml declares, checked with no network: every package the dev
lock pins, as installed in this environment, admits each Python the project declares (the lowest
that requires-python admits first: Debian 12's python3 is 3.11.2); the runtime lock is the dev
lock's versions; and the floors lock holds each runtime dependency at exactly its declared floor
and the test tools at the dev lock's versions. `scripts/lock.sh --check` (CI) resolves the locks
for each of those Pythons against the index as well."""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("locks", ROOT / "scripts" / "locks.py")
assert _spec is not None and _spec.loader is not None
locks = importlib.util.module_from_spec(_spec)
sys.modules["locks"] = locks
_spec.loader.exec_module(locks)


def test_the_lowest_python_declared_comes_first_as_a_full_version():
    lowest, *others = locks.pythons()
    assert Version(lowest) in SpecifierSet(locks.project()["requires-python"])
    # 3.11.0, not 3.11: a package declaring Requires-Python >=3.11.5 must fail it
    assert len(Version(lowest).release) == 3
    assert others == sorted(set(others), key=Version) and lowest not in others


@pytest.mark.parametrize("name", sorted(locks.pins(locks.DEV_LOCK)))
def test_every_dev_lock_pin_admits_every_python_declared(name):
    try:
        installed = distribution(name)
    except PackageNotFoundError:
        pytest.fail(f"{name} is in requirements/dev.lock but not installed: run scripts/venv.sh")
    assert installed.version == locks.pins(locks.DEV_LOCK)[name], "the venv is not the lock"
    declared = installed.metadata["Requires-Python"]
    if declared:
        refused = [p for p in locks.pythons() if Version(p) not in SpecifierSet(declared)]
        assert not refused, (
            f"{name}=={installed.version} needs Python {declared}: cap it in pyproject.toml"
        )


def test_the_runtime_lock_is_the_dev_locks_versions():
    runtime, dev = locks.pins(locks.RUNTIME_LOCK), locks.pins(locks.DEV_LOCK)
    assert runtime and {name: dev.get(name) for name in runtime} == runtime


def test_the_floors_lock_pins_each_runtime_dependency_at_its_declared_floor():
    floors = locks.pins(locks.FLOORS_LOCK)
    for name, pinned in locks.floors().items():
        assert floors.get(name) == str(next(iter(pinned.specifier)).version), (
            f"{name}: requirements/floors.lock is not at pyproject.toml's floor: scripts/lock.sh"
        )
    dev = locks.pins(locks.DEV_LOCK)
    for line in locks.floor_tools():
        name = locks.canonicalize_name(line.split("[")[0].split("==")[0])
        assert floors[name] == dev[name], f"{name}: the floors lock's tools are the dev lock's"
