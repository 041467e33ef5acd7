"""No command shows a secret: every `loginetl` command (those `loginetl --help` lists), in both
log formats at debug level, with retired keys in the ring (LOGINETL_OLD_MASK_KEYS beside
LOGINETL_MASK_KEY) and a database URL holding a password, doing real work and failing. Neither
what it prints nor what it logs holds the mask key, a retired key or the password, nor the raw
ip or device_id of a sample message, except what the command was asked to show (unmask's row).

Each command runs as a real process (`python -m loginetl`): once against the test's queues and
a database it logs into with the password; then failing with the queues and the database
unreachable; and, if it uses the database, failing on a database URL given an option whose
bad value is the password (libpq echoes it in its error)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from loginetl import database, load, schema, transform
from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, sample_messages
from tests.support.servers import unreachable

OLD_KEYS = (
    "retired-key-one-0123456789abcdef-not-a-real-secret",
    "retired-key-two-fedcba9876543210-not-a-real-secret",
)
VALID = [message for message in sample_messages() if "user_id" in message]
SIV_ROW = "0e5b7d4e-8a53-4e1f-9f1c-aaaaaaaaaaaa"  # a row masked in siv under OLD_KEYS[0]
NOWHERE = "http://127.0.0.1:1/000000000000/nowhere"


def listed_commands() -> list[str]:
    """The commands `loginetl --help` lists, as an operator reads them."""
    done = subprocess.run([sys.executable, "-m", "loginetl", "--help"], capture_output=True,
                          text=True, timeout=60, env=os.environ | {"COLUMNS": "200"})  # fmt: skip
    section = done.stdout.split("Commands:", 1)[1]
    return re.findall(r"^\s{2}([a-z][a-z-]+)\s{2,}", section, flags=re.MULTILINE)


# What each command is asked to do: real work on the data the fixture made.
WORK = {
    "init-db": ["init-db"],
    "run": ["run", "--max-messages", "100"],
    "peek": ["peek", "--max-messages", "10"],
    "status": ["status"],
    "replay-dlq": ["replay-dlq", "--max-messages", "10"],
    "verify-masking": ["verify-masking", "--from-queue", "20"],
    "lookup": ["lookup", "--ip", VALID[1]["ip"]],
    "erase": ["erase", "--device-id", VALID[2]["device_id"], "--yes"],
    "unmask": ["unmask", "--message-id", SIV_ROW],
    "rekey": ["rekey", "--batch-size", "5"],
    "prune": ["prune", "--older-than", "90d", "--yes"],
}
QUEUE_ONLY = {"peek", "replay-dlq"}  # these use no database
# What a command was asked to show, raw: unmask prints its row's ip and device_id.
SHOWN = {"unmask": {VALID[0]["ip"], VALID[0]["device_id"]}}


def test_every_command_of_loginetl_help_is_run_here():
    assert set(listed_commands()) == set(WORK)


@dataclass
class World:
    env: dict
    url: str
    password: str


@pytest.fixture
def world(queues, password_url) -> World:
    """The queue holding the sample, three of its messages on the dead-letter queue, and a
    table (its database reached with a password) holding rows under each key of the ring:
    siv rows under a retired key (for unmask and rekey), hmac rows under the primary, and
    rows two years old (for prune)."""
    url, password = password_url
    queues.send_sample()
    queues.send([json.dumps(message) for message in VALID[:3]], queue_url=queues.dlq_url)
    connection = database.connect(url)
    try:
        schema.init_db(connection)
        old = datetime.now() - timedelta(days=730)
        made = [
            transform.to_row(json.dumps(message), key, message_id, sent_at)
            for message, key, message_id, sent_at in [
                (VALID[0], MaskKey(OLD_KEYS[0], "siv"), SIV_ROW, datetime.now()),
                *((m, MaskKey(OLD_KEYS[1], "siv"), f"siv-{i}", old) for i, m in
                  enumerate(VALID[3:8])),
                *((m, MaskKey(MASK_KEY), f"hmac-{i}", datetime.now()) for i, m in
                  enumerate(VALID[:30])),
            ]
        ]  # fmt: skip
        load.insert(connection, made, schema.describe(connection))
    finally:
        connection.close()
    env = os.environ | {
        "LOGINETL_QUEUE_URL": queues.url,
        "LOGINETL_DLQ_URL": queues.dlq_url,
        "LOGINETL_DATABASE_URL": url,
        "LOGINETL_MASK_KEY": MASK_KEY,
        "LOGINETL_OLD_MASK_KEYS": ",".join(OLD_KEYS),
        "LOGINETL_LOG_LEVEL": "debug",
        "LOGINETL_WAIT_TIME": "0",
        "LOGINETL_CONCURRENCY": "1",
        "LOGINETL_RETRY_FOR": "1",
        "COLUMNS": "200",
    }
    return World(env, url, password)


def loginetl(env: dict, log_format: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loginetl", "--log-format", log_format, *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def failing(world: World, command: str) -> list[dict]:
    """The environments where the command fails: everything unreachable (queues and database);
    and, for a command that uses the database, the queues reachable and the database given
    the password as an option's bad value."""
    nowhere = world.env | {
        "LOGINETL_QUEUE_URL": NOWHERE,
        "LOGINETL_DLQ_URL": NOWHERE + "-dlq",
        "LOGINETL_DATABASE_URL": unreachable(world.url),
        "AWS_MAX_ATTEMPTS": "1",  # refused at once, not after botocore's backoff
    }
    echoed = world.env | {"LOGINETL_DATABASE_URL": f"{world.url}?sslmode={world.password}"}
    return [nowhere] + ([echoed] if command not in QUEUE_ONLY else [])


@pytest.mark.slow  # 62 processes, three a case (two for a queue-only one): two minutes
@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("command", sorted(WORK))
def test_no_command_shows_a_secret_working_or_failing(world, command, log_format):
    worked = loginetl(world.env, log_format, WORK[command])
    assert worked.returncode == 0, worked.stdout + worked.stderr
    results = [worked]
    for env in failing(world, command):
        result = loginetl(env, log_format, WORK[command])
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Error:" in result.stderr or '"level": "error"' in result.stderr, result.stderr
        results.append(result)
    if log_format == "json":
        for result in results:
            for line in result.stderr.splitlines():
                json.loads(line)  # every line a JSON object: nothing printed around the logs
    forbidden = {MASK_KEY, *OLD_KEYS, world.password}
    forbidden |= {m[name] for m in sample_messages() for name in ("ip", "device_id") if name in m}
    for result in results:
        allowed = SHOWN.get(command, set()) if result is worked else set()
        for secret in forbidden - allowed:
            assert secret not in result.stdout, (secret, result.stdout)
        for secret in forbidden:  # logs and errors never, whatever the command shows
            assert secret not in result.stderr, (secret, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
    if command in SHOWN:  # it did show what it was asked for
        assert SHOWN[command] <= set(re.findall(r"[\w.:-]+", worked.stdout)), worked.stdout
