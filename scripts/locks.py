"""What scripts/lock.sh, scripts/floors.sh and .ci/run need to know about the locks, read from
pyproject.toml and requirements/ (run with .venv/bin/python, from the checkout's root):

  floors-input   the requirements of requirements/floors.lock: every runtime dependency at its
                 floor (the lower bound pyproject.toml declares), the local stack's packages and
                 the tools scripts/floors.sh tests with at the dev lock's versions
  pythons        the Pythons the locks must install on: the lowest that requires-python admits,
                 and each minor a classifier names
  check          resolve each lock for each of those Pythons, as pip would install it there
                 (wheels only, hashes checked, nothing installed): exit 1 when one does not
                 resolve, 75 when the package index cannot be reached at all
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DEV_LOCK = ROOT / "requirements" / "dev.lock"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
FLOORS_LOCK = ROOT / "requirements" / "floors.lock"
# Besides the [local] extra: what the tests scripts/floors.sh runs import (tests/conftest.py and
# tests/support/ included). The linters, the docs and awscli stay out: they test no runtime
# dependency, and awscli pins botocore to its own release.
FLOOR_TOOLS = ("pytest", "hypothesis", "pyyaml")
EX_TEMPFAIL = 75


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def floors() -> dict[str, Requirement]:
    """Each runtime dependency pinned at its floor: the version of its one `>=`."""
    pinned = {}
    for line in project()["dependencies"]:
        requirement = Requirement(line)
        lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lows) != 1:
            raise SystemExit(f"pyproject.toml: {line!r} needs exactly one >= (its floor)")
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        marker = f"; {requirement.marker}" if requirement.marker else ""
        pinned[canonicalize_name(requirement.name)] = Requirement(
            f"{requirement.name}{extras}=={lows[0]}{marker}"
        )
    return pinned


def pins(lock: Path) -> dict[str, str]:
    """name -> exact version, for every package a lock pins."""
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", lock.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in found}


def floor_tools() -> list[str]:
    """The [local] extra and FLOOR_TOOLS, each at the dev lock's version."""
    locked = pins(DEV_LOCK)
    wanted = [Requirement(line) for line in project()["optional-dependencies"]["local"]]
    wanted += [Requirement(name) for name in FLOOR_TOOLS]
    lines = []
    for requirement in wanted:
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        lines.append(f"{requirement.name}{extras}=={locked[canonicalize_name(requirement.name)]}")
    return lines


def floors_input() -> str:
    return "\n".join([*(str(pin) for pin in floors().values()), *floor_tools()]) + "\n"


def pythons() -> list[str]:
    """The lowest Python requires-python admits (its `>=` as X.Y.Z), then each classifier's."""
    declared = project()["requires-python"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)(?:\.(\d+))?", declared)
    if not match:
        raise SystemExit(f"pyproject.toml: requires-python {declared!r} is not >=X.Y[.Z]")
    lowest = f"{match[1]}.{match[2]}.{match[3] or 0}"
    minors = [
        classifier.rsplit(" :: ", 1)[1]
        for classifier in project()["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: \d+\.\d+", classifier)
    ]
    return [lowest, *(minor for minor in minors if not lowest.startswith(f"{minor}."))]


def resolve(lock: Path, python: str) -> subprocess.CompletedProcess:
    """pip's own dry run of installing `lock` on `python`: each pin must have a wheel for it
    whose Requires-Python admits it, and the hashes the lock names."""
    with tempfile.TemporaryDirectory() as target:
        return subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                "--disable-pip-version-check", "--ignore-installed", "--no-deps",
                "--require-hashes", "--only-binary=:all:", "--target", target,
                "--python-version", python, "-r", str(lock),
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip


def reachable() -> bool:
    """Whether the package index answers: one locked wheel, fetched with short time-outs."""
    name, version = next(iter(pins(DEV_LOCK).items()))
    with tempfile.TemporaryDirectory() as dest:
        fetched = subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--no-cache-dir", "--timeout", "15", "--retries", "1",
                "--dest", dest, f"{name}=={version}",
            ],
            capture_output=True, check=False,
        )  # fmt: skip
    return fetched.returncode == 0


def check() -> int:
    if not reachable():
        print("warning: the package index cannot be reached: the locks were not resolved")
        return EX_TEMPFAIL
    lowest, *others = pythons()
    plan = [(DEV_LOCK, lowest), (RUNTIME_LOCK, lowest), (FLOORS_LOCK, lowest)]
    plan += [(lock, python) for python in others for lock in (DEV_LOCK, RUNTIME_LOCK)]
    failed = 0
    for lock, python in plan:
        done = resolve(lock, python)
        name = lock.relative_to(ROOT)
        if done.returncode == 0:
            print(f"{name} resolves for Python {python}")
        else:
            failed += 1
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
            print(f"{name} does NOT resolve for Python {python}:", *errors[-3:], sep="\n  ")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if argv == ["floors-input"]:
        sys.stdout.write(floors_input())
    elif argv == ["pythons"]:
        print("\n".join(pythons()))
    elif argv == ["check"]:
        return check()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
