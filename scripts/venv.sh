#!/usr/bin/env bash
# Sourced by the other scripts: make sure .venv exists with loginetl and its dev extras installed.
# It installs only when .venv is new, or pyproject.toml (or the checkout's place) changed since
# the last install: once installed, every script runs with no network. PYTHON picks the
# interpreter (3.11 or newer).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: loginetl needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.loginetl-installed
wanted=$(.venv/bin/python -c 'import hashlib, os
print(hashlib.sha256(open("pyproject.toml", "rb").read() + os.getcwd().encode()).hexdigest())')
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    echo "$wanted" > "$stamp"
fi
# loginetl's own sources byte-compiled, as pip leaves an installed package: where
# PYTHONDONTWRITEBYTECODE is set, an editable install would compile them at every start.
.venv/bin/python -m compileall -q loginetl > /dev/null
