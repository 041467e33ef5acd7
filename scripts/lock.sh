#!/usr/bin/env bash
# Write the lock files again from pyproject.toml, after a dependency changed there:
#   requirements/dev.lock      everything scripts/venv.sh installs (runtime, [local], [dev])
#   requirements/runtime.lock  the runtime alone, at the dev lock's versions (the Dockerfile's)
#   requirements/floors.lock   the runtime at its floors (each lower bound pyproject.toml
#                              declares), with the local stack and the test tools at the dev
#                              lock's versions: what scripts/floors.sh tests on
# Exact versions with the hashes of every file the index has for them, so any platform installs
# them with --require-hashes. A version already locked stays while pyproject.toml allows it;
# pass pip-compile's own options to move some: scripts/lock.sh --upgrade-package boto3
# (or --upgrade for all). Needs the network and an existing .venv (scripts/venv.sh).
# pip-compile resolves for the Python running it, not for the lowest one pyproject.toml admits:
# a package whose newer releases need a newer Python is capped in pyproject.toml, saying why.
# `scripts/lock.sh --check` (CI runs it) resolves each lock for every Python declared, as pip
# would install it there, and fails on the one that does not; it writes nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${1:-}" = --check ]; then
    exec .venv/bin/python scripts/locks.py check
fi
# The command pip-compile writes into each file's header; no index or find-links lines, which
# would name this machine's own package mirrors.
export CUSTOM_COMPILE_COMMAND=scripts/lock.sh
compile=(.venv/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url
    --no-emit-find-links "$@")
"${compile[@]}" --allow-unsafe --extra=dev --extra=local --output-file=requirements/dev.lock \
    pyproject.toml
# The dev extra names loginetl[local], so pip-compile pins the checkout itself (as a file: URL,
# with no hash): venv.sh installs the checkout editable after the lock, so that entry goes.
.venv/bin/python - requirements/dev.lock <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r"(# WARNING: pip install will require.*\n# Consider using a hashable URL.*\n)?"
              r"loginetl @ .*\n(    #.*\n)*", "", text)
open(path, "w").write(text)
EOF
"${compile[@]}" --constraint=requirements/dev.lock --output-file=requirements/runtime.lock \
    pyproject.toml
# The floors: the runtime dependencies at their floors and the tools at the dev lock's versions
# are pinned by the input; what they bring resolves anew, as pip would for them.
floors_in=$(mktemp --suffix=.in)
trap 'rm -f "$floors_in"' EXIT
.venv/bin/python scripts/locks.py floors-input > "$floors_in"
"${compile[@]}" --allow-unsafe --output-file=requirements/floors.lock "$floors_in"
# pip-compile names the input file, a temporary one, in each "via" comment.
sed -i "s|$floors_in|scripts/locks.py floors-input|" requirements/floors.lock
