#!/usr/bin/env bash
# The tests against the runtime dependencies at their floors: .venv/floors/ holds exactly
# requirements/floors.lock (each dependency at the lower bound pyproject.toml declares, the local
# stack and pytest at the dev lock's versions; hashes checked), and loginetl's own wheel with
# nothing more to resolve; `pip check` then says every requirement is met, so the declared ranges
# admit the floors. Then the tests that exercise the dependencies run there (the server-free ones,
# SQS, PostgreSQL, Kinesis, the CLI, the metrics); args replace that selection, e.g.
# `scripts/floors.sh -m "not slow" tests/`. CI runs it. Installs from .wheelhouse/floors/
# (scripts/venv.sh fetches it once, online), else from the index.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
home=.venv/floors  # inside .venv: what skips .venv (linters, the image) skips it too
stamp=$home/.loginetl-installed
wanted=$(.venv/bin/python -c 'import hashlib, os
parts = [open(name, "rb").read() for name in ("pyproject.toml", "requirements/floors.lock")]
print(hashlib.sha256(b"".join(parts) + os.getcwd().encode()).hexdigest())')
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    rm -rf "$home"
    "$PYTHON" -m venv "$home"
    source=(--no-index --find-links .wheelhouse/floors)
    if [ ! -f .wheelhouse/floors/.complete ]; then
        source=()
        echo "warning: no .wheelhouse/floors/ (scripts/venv.sh fetches it): installing from the index" >&2
    fi
    "$home/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
        --only-binary=:all: "${source[@]}" -r requirements/floors.lock
    wheel=$(mktemp -d)
    trap 'rm -rf "$wheel"' EXIT
    .venv/bin/python -m pip wheel --quiet --disable-pip-version-check --no-deps \
        --no-build-isolation --wheel-dir "$wheel" . > /dev/null
    "$home/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-index \
        "$wheel"/loginetl-*.whl
    "$home/bin/python" -m pip check --disable-pip-version-check
    echo "$wanted" > "$stamp"
fi
tests=(-m "not slow" --ignore=tests/unit/test_locks.py tests/unit tests/test_config.py
    tests/test_cli_surface.py tests/test_cli_peek.py tests/test_cli_run.py tests/test_cli_init_db.py
    tests/test_cli_replay_dlq.py tests/test_cli_privacy.py tests/test_secret_files.py
    tests/test_envelopes_sns.py tests/test_dead_letter_answers.py tests/test_stream.py
    tests/test_monitoring.py)
if [ "$#" -gt 0 ]; then
    tests=("$@")
fi
"$home/bin/python" - <<'EOF2'
import re, tomllib
from importlib.metadata import version
declared = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
names = [re.match(r"[A-Za-z0-9._-]+", line)[0] for line in declared]
print("the runtime at its floors:", ", ".join(f"{name} {version(name)}" for name in names))
EOF2
# The checkout's tests, importing the checkout's loginetl (the same code as the wheel).
exec "$home/bin/python" -m pytest -p no:cacheprovider "${tests[@]}"
