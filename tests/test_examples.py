"""Every example an operator can copy, from each command's --help and from the README's bash
blocks, runs as written (with the settings pointing at the test servers through the
environment): no usage error, no traceback, the exit code it promises."""

import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from typer.main import get_command

from loginetl import database, load, schema, transform
from loginetl.cli import app
from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, rows, sample_messages
from tests.support.faults import wait_until

ROOT = Path(__file__).resolve().parent.parent
UNMASK_EXAMPLE_ID = "0e5b7d4e-8a53-4e1f-9f1c-2f6c9d41a7b2"  # in unmask's --help example
BIN = Path(sys.executable).parent
# The README and the docs site's pages, read as one text; the CLI reference is generated from
# --help (whose examples run below) and checked by tests/test_docs.py.
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md")]
README = "\n".join(page.read_text() for page in PAGES)

# README lines the suite does not run, each with the reason. Every other line of a bash block
# is run below; the test fails on a line that is neither, or on a reason for a line gone.
NOT_RUN = {
    "scripts/test.sh": "the test command itself: CI runs it (.ci/run), the suite cannot run itself",
    "scripts/demo.sh": "sets up this checkout's own .env and .loginetl-stack; its steps (stack up, "
    "init-db, run) are each run here",
    ".venv/bin/python -m benchmarks --messages 10000 100000": "the benchmark: minutes of load "
    "on LocalStack; it checks every run itself",
    ".venv/bin/python -m benchmarks --stream": "the stream benchmark: minutes of load on "
    "kinesis-mock; it checks every run itself",
    "python3 scripts/kinesis.py up": "starts kinesis-mock on a fixed port, for an operator; the "
    "tests start it on a free port (tests/conftest.py) through the same script",
    "export AWS_ENDPOINT_URL_KINESIS": "sets the shell's environment for the lines that follow",
    "python3 scripts/kinesis.py down": "stops the server the `up` line started",
    ".venv/bin/python -m benchmarks.fuzz --bodies 10000": "10,000 bodies on LocalStack: a minute "
    "or two of load; it checks its run itself (its figures in the README)",
    ".venv/bin/python -m benchmarks --messages 20000 --rtt": "the benchmark at real round "
    "trips: half an hour of load on LocalStack behind a latency proxy; it checks every run",
    ".venv/bin/mutmut run": "mutation testing: minutes of the fast tests run once per mutant",
    ".venv/bin/python -m benchmarks --envelopes": "the envelope benchmark: minutes of load on "
    "LocalStack; it checks every run itself",
    ".venv/bin/python -m benchmarks --keep-extra": "the keep-extra benchmark: minutes of load on "
    "LocalStack; it checks every run itself",
    ".venv/bin/python -m benchmarks --privacy-only": "the privacy benchmark: rekeys 100,000 rows",
    ".venv/bin/python scripts/sabotage.py": "breaks each promise in a scratch copy and runs the "
    "tests it cites: minutes; CI runs those tests unbroken",
    ".venv/bin/mutmut results": "reads what a mutmut run left in mutants/",
    ".venv/bin/mutmut show": "shows a mutant of what a mutmut run left in mutants/",
    "python -m build": "writes dist/ in the checkout; tests/test_packaging.py builds the wheel "
    "and the sdist into a temporary folder",
    "loginetl run --topic logins --bootstrap-servers kafka:9092": "needs a Kafka broker at "
    "kafka:9092: the local stack has none yet; tests/test_kafka.py runs run --topic on Tansu",
    "pip install": "installs into the shell's own environment; tests/test_packaging.py installs "
    "the built wheel into a fresh virtualenv beside another boto3",
}


def help_examples() -> list[tuple[str, str]]:
    """(command, example line) from the Examples block of each command's --help."""
    found = []
    for name, command in get_command(app).commands.items():
        for line in (command.help or "").splitlines():
            if line.strip().startswith("loginetl "):
                found.append((name, line.strip()))
    return found


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block in the README."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def readme_examples() -> list[str]:
    lines = []
    for language, text in readme_blocks():
        if language != "bash":
            continue
        for line in text.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


def not_run_reason(line: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if line.startswith(prefix)), None)


@pytest.fixture
def example_env(queues, database_url, postgres_admin_url, tmp_path) -> dict:
    """The environment an operator would have set: the test's queue, DLQ, database and key."""
    (tmp_path / "raw_messages.json").write_text(json.dumps(sample_messages()))
    ensure_role(postgres_admin_url, "loginetl_writer")  # the role the init-db examples grant to
    return os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "LOGINETL_QUEUE_URL": queues.url,
        "LOGINETL_DLQ_URL": queues.dlq_url,
        "LOGINETL_DATABASE_URL": database_url,
        "LOGINETL_ADMIN_DATABASE_URL": postgres_admin_url,
        "LOGINETL_MASK_KEY": MASK_KEY,
        "LOGINETL_WAIT_TIME": "1",
        "LOGINETL_CONCURRENCY": "1",
        "COLUMNS": "80",
    }


def reads_a_stream(line: str) -> bool:
    """An example with --stream or --to-stream: tests/test_stream_examples.py runs those, on
    kinesis-mock with the local stack's stream."""
    return re.search(r"--(to-)?stream\b", line) is not None


def ensure_role(admin_url: str, role: str) -> None:
    """A role that may already be there (roles are the server's, shared by every database)."""
    import psycopg2

    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection, connection.cursor() as cursor:
        cursor.execute(
            f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    connection.close()


def run_example(line: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """One example through bash, as typed at a prompt; `run --follow` until it has loaded the
    queue, then SIGTERM, as a service manager stops it."""
    command = line.replace(".venv/bin/", f"{BIN}/")
    if "--follow" not in command:
        return subprocess.run(
            ["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
        )
    out, err = cwd / "example.out", cwd / "example.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            env=env,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )

    # Following once it has said so (a service logs its start; a stream, its shard's lease):
    # a SIGTERM before then would find no handler installed yet.
    def started() -> bool:
        said = err.read_text()
        return "lease on shard" in said if "--stream" in command else "run started" in said

    try:
        wait_until(
            lambda: process.poll() is not None or (depth(env) == 0 and started()), timeout=120
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    return subprocess.CompletedProcess(
        command, process.returncode, out.read_text(), err.read_text()
    )


def depth(env: dict) -> int:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=env["LOGINETL_QUEUE_URL"].rsplit("/", 2)[0])
    attributes = sqs.get_queue_attributes(
        QueueUrl=env["LOGINETL_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def assert_ran(result: subprocess.CompletedProcess, line: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{line}\n{output}"
    assert "Traceback" not in output and "Usage:" not in output, f"{line}\n{output}"
    assert "…" not in result.stdout, f"{line} cut something at 80 columns:\n{result.stdout}"


def test_every_command_help_has_examples():
    commands = {name for name, _ in help_examples()}
    assert commands == set(get_command(app).commands)


@pytest.mark.slow  # every example again, end to end: about 20 s
def test_every_help_example_runs_as_written(queues, db, example_env, tmp_path):
    queues.send_sample()
    subprocess.run(
        ["loginetl", "init-db"], env=example_env, cwd=tmp_path, check=True, capture_output=True
    )
    unmask_example_row(db)
    for _, line in sorted(help_examples(), key=order):
        if not reads_a_stream(line):
            assert_ran(run_example(line, example_env, tmp_path), line)
    assert len(rows(db)) == 99  # run loaded the sample; the rest only looked


def unmask_example_row(db) -> None:
    """The siv row unmask's example reads (its message id, ip 203.0.113.7), which erase's
    example then deletes (`erase --ip 203.0.113.7 --yes`): unmask is listed before erase."""
    body = json.dumps(sample_messages()[0] | {"ip": "203.0.113.7"})
    row = transform.to_row(body, MaskKey(MASK_KEY, "siv"), UNMASK_EXAMPLE_ID, datetime.now())
    connection = database.connect(db.url)
    try:
        load.insert(connection, [row], schema.describe(connection))
    finally:
        connection.close()


def order(example: tuple[str, str]) -> int:
    """init-db, then a run that loads some, the others, and the follower that drains the rest."""
    name, line = example
    return {"init-db": 0, "run": 2 if "--follow" in line else 1}.get(name, 1)


def test_the_readme_has_only_bash_text_and_sql_blocks():
    assert {language for language, _ in readme_blocks()} <= {"bash", "text", "sql"}


def test_every_readme_line_not_run_is_still_in_the_readme_and_has_a_reason():
    lines = readme_examples()
    for prefix in NOT_RUN:
        assert any(line.startswith(prefix) for line in lines), prefix


@pytest.mark.slow  # every example again, end to end: about 20 s
def test_every_readme_loginetl_example_runs_as_written(queues, db, example_env, tmp_path):
    queues.send_sample()
    examples = [
        line
        for line in readme_examples()
        if line.startswith("loginetl ") and not not_run_reason(line)
    ]
    assert len(examples) >= 12
    for line in sorted(examples, key=lambda line: ("init-db" not in line, "--follow" in line)):
        if not reads_a_stream(line):
            assert_ran(run_example(line, example_env, tmp_path), line)
    assert len(rows(db)) == 99


@pytest.mark.slow
def test_every_other_readme_example_runs_as_written(example_env, tmp_path):
    """The local stack's commands (in a folder of their own, where the checkout's scripts/ is
    linked, so that its .env and .loginetl-stack are the test's) and the latency script."""
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    others = [line for line in readme_examples() if not line.startswith("loginetl ")]
    run = [line for line in others if not_run_reason(line) is None]
    assert any("loginetl-stack up" in line for line in run)
    assert any("latency.py" in line for line in run)
    env = {k: v for k, v in example_env.items() if not k.startswith("LOGINETL_")}
    env["LOGINETL_ADMIN_DATABASE_URL"] = example_env["LOGINETL_ADMIN_DATABASE_URL"]
    try:
        for line in run:
            assert_ran(run_example(line, env, tmp_path), line)
    finally:
        subprocess.run(
            [str(BIN / "loginetl-stack"), "down", "--purge"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
        )
