"""What a test does when a server or tool it needs is missing here: on a developer's machine it
skips, saying why; under CI (`CI=true`, as GitHub Actions sets it and .ci/run exports it) it
fails, saying why. CI installs everything these tests need (.ci/run: promtool, Node.js and
kinesis-mock, a PostgreSQL built with OpenSSL), so a skip there would report a guarantee as
checked when nothing checked it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    """Whether CI is set to a true value (`true`, `1`, `yes`; not empty, `0`, `false`, `no`)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> NoReturn:
    """pytest.skip(reason), or under CI pytest.fail: a test CI cannot run is a red build."""
    if under_ci():
        pytest.fail(
            f"{reason} (CI is set: a test that cannot run fails here, never skips)", pytrace=False
        )
    pytest.skip(reason)
