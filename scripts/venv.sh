# Sourced by the other scripts: make sure .venv exists with loginetl and its dev extras installed.
# PYTHON picks the interpreter (3.11 or newer).
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
# pip prints nothing when everything is already installed.
# (This machine's pip configuration names local package folders that may be missing; pip warns
# about each, which is noise here.)
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
