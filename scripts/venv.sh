#!/usr/bin/env bash
# Sourced by the other scripts: make sure .venv exists with loginetl and its dev extras installed,
# at the exact versions of requirements/dev.lock (hashes checked), loginetl itself editable.
# It installs only when .venv is new, or pyproject.toml or the lock (or the checkout's place)
# changed since the last install: once installed, every script runs with no network (and a
# change to pyproject.toml alone reinstalls offline: the lock's packages are already there and
# the editable install builds with the setuptools in .venv). PYTHON picks the interpreter (3.11
# or newer). After changing a dependency in pyproject.toml, write the locks again with
# scripts/lock.sh.
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
parts = [open(name, "rb").read() for name in ("pyproject.toml", "requirements/dev.lock")]
print(hashlib.sha256(b"".join(parts) + os.getcwd().encode()).hexdigest())')
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
        -r requirements/dev.lock
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
        --no-build-isolation -e .
    echo "$wanted" > "$stamp"
fi
# The wheels tests/test_packaging.py installs loginetl's own wheel beside, in a fresh venv with
# no index: boto3==1.35.0 (another project's pin, older than the lock's but within loginetl's
# range) and, apart, the runtime dependencies as pyproject.toml declares them, at their newest
# (so an install that upgraded boto3 could, and the test would see it), and twine (its
# docutils would clash with awscli's in .venv). Then the wheels of requirements/floors.lock, for
# scripts/floors.sh. Fetched while online, again only when those lists change; a failure only
# leaves those tests without them (they say so).
download() {  # download DEST PIP-DOWNLOAD-ARGS...
    local dest=$1
    shift
    .venv/bin/python -m pip download --quiet --disable-pip-version-check --dest "$dest" "$@" \
        > /dev/null 2>&1
}
beside="boto3==1.35.0"
wheels=$(.venv/bin/python -c 'import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join([*project["dependencies"], "twine"]))')
if [ "$(cat .wheelhouse/.complete 2>/dev/null)" != "$beside"$'\n'"$wheels" ]; then
    mapfile -t requirements <<< "$wheels"
    if download .wheelhouse "$beside" && download .wheelhouse "${requirements[@]}"; then
        printf '%s\n%s\n' "$beside" "$wheels" > .wheelhouse/.complete
    else
        echo "warning: could not download the wheels of tests/test_packaging.py" >&2
    fi
fi
floors=$(sha256sum < requirements/floors.lock)
if [ "$(cat .wheelhouse/floors/.complete 2>/dev/null)" != "$floors" ]; then
    if download .wheelhouse/floors --require-hashes --no-deps --only-binary=:all: \
        -r requirements/floors.lock; then
        echo "$floors" > .wheelhouse/floors/.complete
    else
        echo "warning: could not download the wheels of requirements/floors.lock" >&2
    fi
fi
# loginetl's own sources byte-compiled, as pip leaves an installed package: where
# PYTHONDONTWRITEBYTECODE is set, an editable install would compile them at every start.
.venv/bin/python -m compileall -q loginetl > /dev/null
