#!/usr/bin/env bash
# The demo on a fresh machine: local stack up (SQS server + PostgreSQL, queue seeded with the 100
# sample messages, settings written to .env), then init-db, run, and a few loaded rows. Run again,
# it loads nothing twice: `up` seeds only while user_logins is empty, and says so.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
.venv/bin/loginetl-stack up
.venv/bin/loginetl init-db
.venv/bin/loginetl run
.venv/bin/python - <<'PY'
# A few loaded rows, read with the settings the stack wrote to .env.
import psycopg2
from dotenv import dotenv_values
from rich.console import Console

from loginetl.cli.render import NARROW, facts, table

NAMES = ["user_id", "device_type", "masked_ip", "masked_device_id", "locale", "app_version",
         "create_date"]
with psycopg2.connect(dotenv_values(".env")["LOGINETL_DATABASE_URL"]) as connection:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, device_type, left(masked_ip, 12), left(masked_device_id, 12), "
            "locale, app_version, create_date FROM user_logins ORDER BY loaded_at DESC LIMIT 3"
        )
        rows = [["" if value is None else str(value) for value in row] for row in cursor]
console = Console()
console.print("A few rows of user_logins (masks: their first 12 characters)")
if console.width < NARROW:  # one record per row, as peek shows messages when narrow
    for number, row in enumerate(rows, 1):
        record = facts(f"row {number}")
        for name, value in zip(NAMES, row):
            record.add_row(name, value)
        console.print(record)
else:
    shown = table(None, *NAMES)
    for row in rows:
        shown.add_row(*row)
    console.print(shown)
PY
echo "The stack keeps running: stop it with .venv/bin/loginetl-stack down (add --purge to delete its data)."
echo "Both commands are in .venv/bin: after 'source .venv/bin/activate', type them bare (loginetl status)."
