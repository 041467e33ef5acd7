#!/usr/bin/env bash
# The whole test suite, slow tests included, against real servers: moto's SQS server and
# PostgreSQL (127.0.0.1:5432 when one answers, else an embedded one). Extra args go to pytest,
# e.g. `scripts/test.sh -m "not slow"`.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
exec .venv/bin/python -m pytest "$@"
