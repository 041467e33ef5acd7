"""The local stack without Docker (`loginetl-stack`), with real processes: moto's server and an
embedded PostgreSQL, on free ports, in temporary folders, always torn down.

Also checks docker-compose.yml and runs its LocalStack init hook against moto.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg2
import pytest
from dotenv import dotenv_values
from typer.testing import CliRunner

from loginetl.stack import files as stack_files
from loginetl.stack import kinesis_mock as stack_kinesis_mock
from loginetl.stack import postgres as stack_postgres
from loginetl.stack import processes as stack_processes
from loginetl.stack import sqs as stack_sqs
from loginetl.stack import up_steps as stack_up_steps
from loginetl.stack.cli import app
from loginetl.stack.processes import StackError
from tests.support.ci import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = json.loads((ROOT / "loginetl/data/sample_data.json").read_text())
HOOK = ROOT / "docker/localstack-init/ready.d/init-queues.sh"


def free_port() -> int:
    """A port nothing listens on, with the next one free too (room for a fallback)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if (
            port < 65535
            and stack_processes.port_is_free(port)
            and stack_processes.port_is_free(port + 1)
        ):
            return port


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def aws_client(service: str, endpoint: str):
    """A client of a local server for service ("sqs", "kinesis"), with test credentials."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def sqs_client(endpoint: str):
    return aws_client("sqs", endpoint)


def depth(client, queue_url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
    return sum(int(attributes["Attributes"][name]) for name in names)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def tear_down(stack_dir: Path) -> None:
    """Stop everything in stack_dir whatever state it is in, then remove it."""
    invoke("down", "--purge", "--dir", str(stack_dir))
    stops = (
        (stack_postgres.stop_postgres, stack_dir / "pgdata"),
        (stack_sqs.stop_sqs_server, stack_dir),
        (stack_kinesis_mock.stop_kinesis_mock, stack_dir),
    )
    for stop, folder in stops:
        try:
            stop(folder)
        except StackError:
            pass
    shutil.rmtree(stack_dir, ignore_errors=True)


# --- the stack, started once with the CLI ----------------------------------------------------


@dataclass
class Stack:
    dir: Path
    env_file: Path
    output: str
    taken_port: int  # asked for as the SQS port while something else listened on it
    sqs_port: int
    pg_port: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("devstack")
    stack_dir = base / "stack"
    env_file = base / "test.env"
    env_file.write_text("# my own settings\nOTHER_SETTING=keep-me\nLOGINETL_QUEUE_URL=stale\n")
    taken_port, pg_port = free_port(), free_port()
    blocker = listening_socket(taken_port)
    try:
        result = invoke(
            "up",
            "--dir",
            str(stack_dir),
            "--env-file",
            str(env_file),
            "--sqs-port",
            str(taken_port),
            "--pg-port",
            str(pg_port),
        )
        assert result.exit_code == 0, result.output
        fallback = (
            rf"port {taken_port} is taken \(another server\?\); "
            r"the SQS server listens on (\d+) instead"
        )
        moved = re.search(fallback, result.output)
        assert moved, result.output
        yield Stack(stack_dir, env_file, result.output, taken_port, int(moved.group(1)), pg_port)
    finally:
        blocker.close()
        tear_down(stack_dir)


def test_up_falls_back_from_a_taken_port_and_says_so(stack):
    assert stack.sqs_port != stack.taken_port
    assert f"PostgreSQL started on port {stack.pg_port}" in stack.output  # free: used as asked
    assert f"http://localhost:{stack.sqs_port}/000000000000/login-queue" in stack.output
    assert f"postgresql://postgres:***@localhost:{stack.pg_port}/postgres" in stack.output


def test_up_never_prints_the_mask_key_or_the_password(stack):
    settings = dotenv_values(stack.env_file)
    assert settings["LOGINETL_MASK_KEY"] not in stack.output
    assert "postgres:postgres@" not in stack.output


def test_env_file_has_the_settings_and_keeps_other_lines(stack):
    settings = dotenv_values(stack.env_file)
    endpoint = f"http://localhost:{stack.sqs_port}"
    assert settings["LOGINETL_QUEUE_URL"] == f"{endpoint}/000000000000/login-queue"
    assert settings["LOGINETL_DLQ_URL"] == f"{endpoint}/000000000000/login-queue-dlq"
    assert settings["AWS_ENDPOINT_URL"] == endpoint
    assert settings["AWS_ACCESS_KEY_ID"] == "test"
    assert settings["AWS_SECRET_ACCESS_KEY"] == "test"
    assert settings["AWS_DEFAULT_REGION"] == "us-east-1"
    assert settings["LOGINETL_DATABASE_URL"] == (
        f"postgresql://postgres:postgres@localhost:{stack.pg_port}/postgres"
    )
    assert re.fullmatch(r"[0-9a-f]{64}", settings["LOGINETL_MASK_KEY"])
    assert settings["OTHER_SETTING"] == "keep-me"
    assert "# my own settings" in stack.env_file.read_text()
    assert stat.S_IMODE(stack.env_file.stat().st_mode) == 0o600  # it holds the mask key


def test_queues_exist_with_the_redrive_policy(stack):
    client = sqs_client(f"http://localhost:{stack.sqs_port}")
    queue_url = client.get_queue_url(QueueName="login-queue")["QueueUrl"]
    dlq_url = client.get_queue_url(QueueName="login-queue-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    policy = json.loads(attributes["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == dlq_arn
    assert int(policy["maxReceiveCount"]) == 5
    assert attributes["VisibilityTimeout"] == "30"


def test_queue_is_seeded_with_the_sample_messages(stack):
    client = sqs_client(f"http://localhost:{stack.sqs_port}")
    queue_url = dotenv_values(stack.env_file)["LOGINETL_QUEUE_URL"]
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "100"
    # Each message is one element of the sample array, as JSON. (VisibilityTimeout=0: it stays.)
    message = client.receive_message(QueueUrl=queue_url, VisibilityTimeout=0)["Messages"][0]
    assert json.loads(message["Body"]) in SAMPLE


def test_postgres_accepts_the_dsn_from_the_env_file(stack):
    dsn = dotenv_values(stack.env_file)["LOGINETL_DATABASE_URL"]
    with psycopg2.connect(dsn, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute("select 1")
        assert cursor.fetchone() == (1,)
    connection.close()
    # Over TCP the password is checked (scram-sha-256), not trusted.
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(dsn.replace(":postgres@", ":wrong@"), connect_timeout=5)


def test_status_tells_what_runs_where(stack):
    result = invoke("status", "--dir", str(stack.dir))
    assert result.exit_code == 0, result.output
    assert f"running on http://localhost:{stack.sqs_port}" in result.output
    assert "login-queue: 100 messages" in result.output
    assert f"postgresql://postgres:***@localhost:{stack.pg_port}/postgres" in result.output
    kinesis = dotenv_values(stack.env_file)["AWS_ENDPOINT_URL_KINESIS"]
    if ON_KINESIS_MOCK:
        assert f"Kinesis (kinesis-mock): running on {kinesis}" in result.output
    else:
        assert f"Kinesis (moto): on the SQS server, {kinesis}" in result.output
    assert "login-stream: 2 shards" in result.output


def test_up_again_reuses_the_stack_and_does_not_seed_twice(stack):
    mask_key = dotenv_values(stack.env_file)["LOGINETL_MASK_KEY"]
    result = invoke(
        "up",
        "--dir",
        str(stack.dir),
        "--env-file",
        str(stack.env_file),
        "--sqs-port",
        str(stack.taken_port),
        "--pg-port",
        str(stack.pg_port),
    )
    assert result.exit_code == 0, result.output
    assert f"SQS server already running on port {stack.sqs_port}" in result.output
    assert f"PostgreSQL already running on port {stack.pg_port}" in result.output
    assert "not seeded again" in result.output
    if ON_KINESIS_MOCK:
        assert "kinesis-mock already running on port" in result.output
    assert "login-stream: exists" in result.output
    assert dotenv_values(stack.env_file)["LOGINETL_MASK_KEY"] == mask_key
    client = sqs_client(f"http://localhost:{stack.sqs_port}")
    assert depth(client, dotenv_values(stack.env_file)["LOGINETL_QUEUE_URL"]) == 100


def test_seed_sends_the_sample_messages_again(stack):
    result = invoke("seed", "--dir", str(stack.dir), "--env-file", str(stack.env_file))
    assert result.exit_code == 0, result.output
    assert "sent 100 sample messages" in result.output
    client = sqs_client(f"http://localhost:{stack.sqs_port}")
    assert depth(client, dotenv_values(stack.env_file)["LOGINETL_QUEUE_URL"]) == 200


# --- the stream beside the queues ------------------------------------------------------------

# Where Node.js and an installed kinesis-mock are (CI: .ci/run installs it), `up` puts the
# stream there; elsewhere on moto. The moto path is also forced below, so both always run.
ON_KINESIS_MOCK = stack_kinesis_mock.kinesis_mock_missing() is None


def kinesis_client(endpoint: str):
    return aws_client("kinesis", endpoint)


def stream_records(endpoint: str) -> list:
    client = kinesis_client(endpoint)
    records = []
    for shard in client.list_shards(StreamName="login-stream")["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName="login-stream", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += client.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    return records


def loginetl(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The loginetl console script as an operator runs it: in the folder of the stack's .env,
    nothing of loginetl's or AWS's in the environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOGINETL_", "AWS_"))}
    return subprocess.run(
        [Path(sys.executable).parent / "loginetl", *args],
        cwd=folder,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=180,
    )


def run_the_stream_in(stack: Stack, folder: Path, env: dict | None = None) -> dict:
    """init-db and `run --stream login-stream` with the stack's .env (which names the queue
    too: the --stream typed wins, no usage error)."""
    folder.mkdir(exist_ok=True)
    shutil.copy(stack.env_file, folder / ".env")
    assert dotenv_values(folder / ".env")["LOGINETL_QUEUE_URL"]
    init = loginetl(folder, "init-db", env=env)
    assert init.returncode == 0, init.stderr
    result = loginetl(folder, "run", "--stream", "login-stream", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_up_creates_the_stream_beside_the_queues(stack):
    settings = dotenv_values(stack.env_file)
    kinesis = settings["AWS_ENDPOINT_URL_KINESIS"]
    assert "LOGINETL_STREAM" not in settings  # it would turn every `run` to the stream
    if ON_KINESIS_MOCK:
        assert kinesis != settings["AWS_ENDPOINT_URL"]
        assert "kinesis-mock started on port" in stack.output
        port = int(kinesis.rsplit(":", 1)[1])
        assert (stack.dir / "kinesis.port").read_text().strip() == str(port)
    else:
        assert kinesis == settings["AWS_ENDPOINT_URL"]
    shards = kinesis_client(kinesis).list_shards(StreamName="login-stream")["Shards"]
    assert len(shards) == 2
    assert stream_records(kinesis) == []  # created empty: `seed --stream` fills it
    assert "login-stream: created" in stack.output


def test_seed_stream_fills_it_and_run_stream_loads_99_and_dead_letters_1(stack, tmp_path):
    settings = dotenv_values(stack.env_file)
    kinesis, dlq_url = settings["AWS_ENDPOINT_URL_KINESIS"], settings["LOGINETL_DLQ_URL"]
    result = invoke("seed", "--stream", "--dir", str(stack.dir), "--env-file", str(stack.env_file))
    assert result.exit_code == 0, result.output
    assert f"put 100 sample records on the stream login-stream at {kinesis}" in result.output
    records = stream_records(kinesis)
    as_json = sorted(json.dumps(json.loads(r["Data"]), sort_keys=True) for r in records)
    assert as_json == sorted(json.dumps(message, sort_keys=True) for message in SAMPLE)
    assert len({r["PartitionKey"] for r in records}) == 100
    client = sqs_client(settings["AWS_ENDPOINT_URL"])
    dead_before = depth(client, dlq_url)
    summary = run_the_stream_in(stack, tmp_path / "operator")
    assert (summary["received"], summary["loaded"], summary["dead_lettered"]) == (100, 99, 1)
    assert depth(client, dlq_url) == dead_before + 1
    with (
        psycopg2.connect(settings["LOGINETL_DATABASE_URL"]) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "SELECT count(*) FROM user_logins WHERE sqs_message_id LIKE 'login-stream/%'"
        )
        assert cursor.fetchone() == (99,)
    connection.close()


def test_up_with_kinesis_moto_puts_the_stream_on_moto(stack, tmp_path):
    """The fallback where Node.js is missing, forced: LOGINETL_STACK_KINESIS=moto."""
    result = CliRunner().invoke(
        app,
        [
            "up",
            "--dir",
            str(stack.dir),
            "--env-file",
            str(stack.env_file),
            "--sqs-port",
            str(stack.sqs_port),
            "--pg-port",
            str(stack.pg_port),
        ],
        env={"LOGINETL_STACK_KINESIS": "moto"},
    )
    assert result.exit_code == 0, result.output
    settings = dotenv_values(stack.env_file)
    moto = f"http://localhost:{stack.sqs_port}"
    assert settings["AWS_ENDPOINT_URL_KINESIS"] == moto
    assert "Kinesis (moto)" in result.output
    assert running_kinesis_mock_gone(stack, result.output)
    status = invoke("status", "--dir", str(stack.dir))
    assert f"Kinesis (moto): on the SQS server, {moto}" in status.output
    assert "login-stream: 2 shards" in status.output
    seeded = invoke("seed", "--stream", "--dir", str(stack.dir), "--env-file", str(stack.env_file))
    assert seeded.exit_code == 0, seeded.output
    assert len(stream_records(moto)) == 100 * (1 if ON_KINESIS_MOCK else 2)
    # A database of its own: the first stream's checkpoints are another server's.
    dsn = settings["LOGINETL_DATABASE_URL"]
    connection = psycopg2.connect(dsn)
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE on_moto")
    connection.close()
    own = {"LOGINETL_DATABASE_URL": dsn.rsplit("/", 1)[0] + "/on_moto"}
    summary = run_the_stream_in(stack, tmp_path / "operator", env=own)
    expected = 100 * (1 if ON_KINESIS_MOCK else 2)
    assert (summary["received"], summary["loaded"]) == (expected, expected * 99 // 100)
    # Back to the default (auto): kinesis-mock again where it can run, for `down` to stop.
    again = invoke(
        "up",
        "--dir",
        str(stack.dir),
        "--env-file",
        str(stack.env_file),
        "--sqs-port",
        str(stack.sqs_port),
        "--pg-port",
        str(stack.pg_port),
    )
    assert again.exit_code == 0, again.output
    assert ("kinesis-mock started" in again.output) == ON_KINESIS_MOCK


def running_kinesis_mock_gone(stack: Stack, output: str) -> bool:
    """kinesis-mock, when the stack ran it, was stopped by the switch to moto."""
    if not ON_KINESIS_MOCK:
        return not (stack.dir / "kinesis.pid").exists()
    gone = stack_kinesis_mock.running_kinesis_mock(stack.dir) is None
    return "kinesis-mock stopped" in output and gone


def test_down_purge_stops_everything_and_removes_the_folder(stack):
    sqs_pid = int((stack.dir / "sqs.pid").read_text())
    kinesis_pid = int((stack.dir / "kinesis.pid").read_text()) if ON_KINESIS_MOCK else None
    # Folders above the stack closed to others since `up` (as a pytest session starting beside
    # this one does to /tmp/pytest-of-USER): as root, the PostgreSQL user's way in is shut.
    parent = stack.dir.parent
    parent.chmod(parent.stat().st_mode & ~stat.S_IXOTH)
    result = invoke("down", "--purge", "--dir", str(stack.dir))
    assert result.exit_code == 0, result.output
    assert f"PostgreSQL stopped (was on port {stack.pg_port})" in result.output
    assert f"SQS server stopped (was on port {stack.sqs_port})" in result.output
    assert not stack.dir.exists()
    assert not answers(stack.sqs_port)
    assert not answers(stack.pg_port)
    assert not stack_processes.process_running(sqs_pid, "moto.server")
    if ON_KINESIS_MOCK:
        assert "kinesis-mock stopped (was on port" in result.output
        assert not stack_processes.process_running(kinesis_pid, "kinesis-local")
    # Idempotent: nothing left to stop is not an error.
    again = invoke("down", "--purge", "--dir", str(stack.dir))
    assert again.exit_code == 0, again.output
    assert "nothing to stop" in again.output


# --- the plain functions the test-suite uses -------------------------------------------------


def test_start_and_stop_postgres(tmp_path_factory):
    # A folder under pytest's own temporary folder (mode 0700): under root the server runs as
    # another user and must still reach it.
    data_dir = tmp_path_factory.mktemp("embedded-postgres")
    try:
        dsn = stack_postgres.start_postgres(data_dir)
        match = re.fullmatch(r"postgresql://postgres:postgres@127\.0\.0\.1:(\d+)/postgres", dsn)
        assert match, dsn
        with psycopg2.connect(dsn, connect_timeout=5) as connection, connection.cursor() as cursor:
            cursor.execute("select current_user")
            assert cursor.fetchone() == ("postgres",)
        connection.close()
        assert stack_postgres.start_postgres(data_dir) == dsn  # running: reused
        stack_postgres.stop_postgres(data_dir)
        assert not answers(int(match.group(1)))
        assert stack_postgres.running_postgres(data_dir) is None
        stack_postgres.stop_postgres(data_dir)  # idempotent
    finally:
        stack_postgres.stop_postgres(data_dir)


def test_start_and_stop_sqs_server(tmp_path):
    try:
        endpoint = stack_sqs.start_sqs_server(tmp_path, free_port())
        assert sqs_client(endpoint).list_queues().get("QueueUrls", []) == []
        port = int(endpoint.rsplit(":", 1)[1])
        stack_sqs.stop_sqs_server(tmp_path)
        assert not answers(port)
        assert not (tmp_path / "sqs.pid").exists()
        stack_sqs.stop_sqs_server(tmp_path)  # idempotent
    finally:
        stack_sqs.stop_sqs_server(tmp_path)


def test_a_given_port_that_is_taken_is_refused(tmp_path):
    port = free_port()
    with listening_socket(port):
        assert not stack_processes.port_is_free(port)
        assert stack_processes.first_free_port(port) != port
        with pytest.raises(StackError, match=f"port {port} is taken"):
            stack_postgres.start_postgres(tmp_path / "pg", port)
        with pytest.raises(StackError, match=f"port {port} is taken"):
            stack_sqs.start_sqs_server(tmp_path, port)
    assert not (tmp_path / "pg").exists()


def test_a_standalone_backends_pid_file_is_no_running_server(tmp_path):
    """initdb's bootstrap backend writes minus its pid to postmaster.pid: an initdb that
    failed there leaves it behind, and down, status and up must still answer in one line."""
    (tmp_path / "postmaster.pid").write_text(f"-{os.getpid()}\n{tmp_path}\n0\n5432\n")
    assert stack_postgres.running_postgres(tmp_path) is None


def test_merge_env_file_replaces_owned_keys_and_keeps_the_rest(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport AWS_ENDPOINT_URL=old\nKEEP=1\nAWS_ENDPOINT_URL=dup\n")
    stack_files.merge_env_file(env_file, {"AWS_ENDPOINT_URL": "new", "LOGINETL_MASK_KEY": "k"})
    assert env_file.read_text() == "# comment\nAWS_ENDPOINT_URL=new\nKEEP=1\nLOGINETL_MASK_KEY=k\n"


def test_without_node_the_stream_goes_on_moto_and_a_forced_kinesis_mock_fails_first(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PATH", str(tmp_path / "no-node"))  # no `node` to find
    assert stack_kinesis_mock.kinesis_mock_missing() == "Node.js is missing"
    assert stack_up_steps.start_kinesis_mock(tmp_path, "auto", free_port(), ()) is None
    assert "Node.js is missing: the stream goes on the SQS server (moto)" in capsys.readouterr().out
    stack_dir = tmp_path / "stack"
    result = invoke(
        "up",
        "--kinesis",
        "kinesis-mock",
        "--dir",
        str(stack_dir),
        "--env-file",
        str(tmp_path / ".env"),
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == "loginetl-stack: cannot start kinesis-mock: Node.js is missing"
    assert not stack_dir.exists()  # refused before anything started


# --- errors: one line on stderr, no traceback ------------------------------------------------


def console_script() -> Path:
    script = Path(sys.executable).parent / "loginetl-stack"
    if not script.exists():
        skip_or_fail("the loginetl-stack console script is not installed")
    return script


def test_errors_are_one_line_on_stderr(tmp_path):
    result = subprocess.run(
        [console_script(), "seed", "--dir", tmp_path / "none", "--env-file", tmp_path / "none.env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("loginetl-stack: ")
    # The command as it can be typed here (the test runs in tmp_path: the paths are relative).
    up = re.search(r"run `(\S+) up --dir none --env-file none.env` first", result.stderr)
    assert up and up.group(1) in (str(console_script()), "loginetl-stack"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_usage_exits_2():
    result = invoke("up", "--sqs-port", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--sqs-port'" in result.output


def test_purge_refuses_a_folder_that_is_not_a_stack(tmp_path):
    (tmp_path / "precious.txt").write_text("keep")
    result = invoke("down", "--purge", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert "not a loginetl stack folder" in result.stderr
    assert (tmp_path / "precious.txt").exists()


# --- docker-compose ---------------------------------------------------------------------------


def test_docker_compose_defines_localstack_and_postgres():
    import yaml  # a dependency of the dev extras

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    localstack, postgres = compose["services"]["localstack"], compose["services"]["postgres"]
    assert localstack["image"].startswith("localstack/localstack:4")
    assert localstack["environment"]["SERVICES"] == "sqs"
    assert any(port.endswith(":4566") for port in localstack["ports"])
    assert (
        "./docker/localstack-init/ready.d:/etc/localstack/init/ready.d:ro" in localstack["volumes"]
    )
    sample_mount = next(
        v for v in localstack["volumes"] if v.startswith("./loginetl/data/sample_data.json:")
    )
    assert sample_mount.endswith(":ro")
    assert sample_mount.split(":")[1] == localstack["environment"]["LOGINETL_SAMPLE_DATA"]
    assert postgres["image"] == "postgres:16"
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "postgres"
    assert any(port.endswith(":5432") for port in postgres["ports"])


def test_localstack_init_hook_is_an_executable_bash_script():
    assert HOOK.stat().st_mode & stat.S_IXUSR  # LocalStack runs only executable hooks
    subprocess.run(["bash", "-n", HOOK], check=True)


@pytest.mark.slow  # the AWS CLI starts slowly, and the hook runs it for every step
def test_localstack_init_hook_creates_and_seeds_the_queues_once(tmp_path):
    """The hook, run against moto with `awslocal` standing in as the AWS CLI with an endpoint."""
    # The AWS CLI comes with the dev extras, next to this interpreter.
    aws = shutil.which("aws", path=os.path.dirname(sys.executable)) or shutil.which("aws")
    assert aws, "the AWS CLI is missing: pip install -e '.[dev]'"
    shim = tmp_path / "bin" / "awslocal"
    shim.parent.mkdir()
    shim.write_text(f'#!/usr/bin/env bash\nexec {aws} --endpoint-url "$SQS_ENDPOINT" "$@"\n')
    shim.chmod(0o755)
    try:
        endpoint = stack_sqs.start_sqs_server(tmp_path / "sqs", free_port())
        env = {
            "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "SQS_ENDPOINT": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "LOGINETL_SAMPLE_DATA": str(ROOT / "loginetl/data/sample_data.json"),
        }
        for _ in range(2):  # run twice: the second run must not seed again
            run = subprocess.run(
                ["bash", HOOK], env=env, capture_output=True, text=True, timeout=120
            )
            assert run.returncode == 0, run.stderr
        client = sqs_client(endpoint)
        queue_url = client.get_queue_url(QueueName="login-queue")["QueueUrl"]
        dlq_url = client.get_queue_url(QueueName="login-queue-dlq")["QueueUrl"]
        assert depth(client, queue_url) == 100
        assert "not seeding" in run.stdout
        policy = json.loads(
            client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])[
                "Attributes"
            ]["RedrivePolicy"]
        )
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        assert policy["deadLetterTargetArn"] == dlq_arn and int(policy["maxReceiveCount"]) == 5
        bodies = [
            json.loads(m["Body"])
            for m in client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        ]
        assert all(body in SAMPLE for body in bodies)
    finally:
        stack_sqs.stop_sqs_server(tmp_path / "sqs")
