#!/usr/bin/env bash
# The demo on a fresh machine: local stack up (SQS server + PostgreSQL, queue seeded with the 100
# sample messages, settings written to .env), then init-db, run, and a few loaded rows.
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
from rich.table import Table

with psycopg2.connect(dotenv_values(".env")["LOGINETL_DATABASE_URL"]) as connection:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, device_type, left(masked_ip, 16), left(masked_device_id, 16), "
            "locale, app_version, create_date FROM user_logins ORDER BY loaded_at DESC LIMIT 5"
        )
        names = ["user_id", "device_type", "masked_ip…", "masked_device_id…", "locale",
                 "app_version", "create_date"]
        table = Table(*names, title="a few rows of user_logins")
        for row in cursor.fetchall():
            table.add_row(*("" if value is None else str(value) for value in row))
Console().print(table)
PY
echo "The stack keeps running: stop it with .venv/bin/loginetl-stack down (add --purge to delete its data)."
