"""A reader that closes the pipe early (`loginetl status --json | head -1`): every command ends
quietly, with no error line, exiting 141 as a Unix tool that SIGPIPE ended does."""

import json
import os
import subprocess
import sys

import pytest

from loginetl.cli import app
from loginetl.errors import EXIT_CLOSED_PIPE
from tests.support.runs import env_for, init, valid_bodies

COMMANDS = sorted(command.name for command in app.registered_commands)
# Each command doing real work that prints a result (the JSON form: one write at the end).
WORK = {
    "init-db": ["--json"],
    "status": ["--json"],
    "peek": ["--json"],
    "run": ["--json"],
    "replay-dlq": ["--dry-run", "--json"],
    "verify-masking": ["--json"],
    "lookup": ["--user-id", "nobody", "--json"],
    "erase": ["--user-id", "nobody", "--json"],
    "unmask": ["--message-id", "MESSAGE_ID", "--json"],
    "rekey": ["--dry-run", "--json"],
    "prune": ["--older-than", "90d", "--json"],
}


LOGINETL = [sys.executable, "-m", "loginetl"]
STACK = [sys.executable, "-c", "from loginetl.stack.cli import main; main()"]


def into_closed_pipe(*args: str, env: dict, program: list[str] = LOGINETL) -> tuple[int, str]:
    """`loginetl ARGS` writing its output into a pipe whose reader has already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [*program, *args],
            stdout=write,
            stderr=subprocess.PIPE,
            env=os.environ | env,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    return done.returncode, done.stderr


def test_every_command_is_listed_here():
    assert sorted(WORK) == COMMANDS


def test_every_command_ends_quietly_when_its_reader_goes(queues, database_url, db):
    env = env_for(queues.url, database_url, LOGINETL_MASK_MODE="siv")
    init(database_url)
    queues.send(valid_bodies()[:3])
    loaded = subprocess.run(
        [*LOGINETL, "run", "--json"],
        env=os.environ | env,
        capture_output=True,
        text=True,
    )
    assert json.loads(loaded.stdout)["loaded"] == 3, loaded.stderr
    with db.cursor() as cursor:
        cursor.execute("SELECT sqs_message_id FROM user_logins LIMIT 1")
        (message_id,) = cursor.fetchone()
    queues.send(valid_bodies()[3:5])  # for peek and run to print

    for command in COMMANDS:
        args = [arg.replace("MESSAGE_ID", message_id) for arg in WORK[command]]
        # As JSON (print), then as rich tables (rich's own closed-pipe path).
        for shown in (args, [arg for arg in args if arg != "--json"]):
            code, errors = into_closed_pipe(command, *shown, env=env)
            # (peek's note on receive counts is no error)
            assert code == EXIT_CLOSED_PIPE and "rror" not in errors, f"{shown}: {code} {errors}"
        code, errors = into_closed_pipe(command, "--help", env=env)
        assert (code, errors) == (EXIT_CLOSED_PIPE, ""), f"{command} --help: {code} {errors}"


@pytest.mark.parametrize("program", [LOGINETL, STACK], ids=["loginetl", "loginetl-stack"])
def test_help_ends_quietly_when_its_reader_goes(program):
    assert into_closed_pipe("--help", env={}, program=program) == (EXIT_CLOSED_PIPE, "")
