"""Configuration precedence: a flag beats the environment, which beats `.env`, for every
setting, and a queue URL and an endpoint that name different servers stop the command.

The rule itself (config.sqs_endpoint, config.two_sources, where .env values come from) is
tested directly; then through the CLI against moto's server on one port and nothing on another,
so that which value won shows in what was loaded, dead-lettered, or refused. The exact report
(issue 36): the local stack's .env names the endpoint, `--queue-url` is typed at a dead port,
and the run loaded from the .env's server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loginetl import config, sqs
from loginetl.cli import app
from loginetl.config import Given, Settings, Source, Sources
from loginetl.errors import ConfigError
from tests.support.data import AWS_ENV, MASK_KEY, rows, sample_messages
from tests.support.runs import init
from tests.support.servers import make_queues

CLI, ENV, DOTENV, DEFAULT = (
    Source.COMMAND_LINE,
    Source.ENVIRONMENT,
    Source.DOTENV,
    Source.DEFAULT,
)
NAMES = {CLI: "--queue-url", ENV: "LOGINETL_QUEUE_URL", DOTENV: "LOGINETL_QUEUE_URL"}
ENDPOINT_NAMES = {CLI: "--endpoint-url", ENV: "AWS_ENDPOINT_URL", DOTENV: "AWS_ENDPOINT_URL"}
VALID = json.dumps(next(m for m in sample_messages() if "user_id" in m))
INVALID = json.dumps({"user_id": "no-ip"})  # refused: dead-lettered


def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def on_port(url: str, port: int) -> str:
    """`url` (a moto queue URL) on another port of localhost, same path."""
    return f"http://localhost:{port}/" + url.split("/", 3)[3]


def queue(url: str, source: Source) -> Given:
    return Given(url, source, NAMES.get(source, "LOGINETL_QUEUE_URL"), "the queue URL")


def endpoint(url: str, source: Source) -> Given:
    return Given(url, source, ENDPOINT_NAMES[source], "the endpoint")


def write_dotenv(folder: Path, **lines: str) -> None:
    (folder / ".env").write_text("".join(f"{name}={value}\n" for name, value in lines.items()))


def invoke(*args: str, env: dict | None = None):
    """loginetl in-process, in the test's working directory (where its .env is), with only
    the variables `env` sets (None removes one)."""
    base = {"LOGINETL_MASK_KEY": MASK_KEY, "LOGINETL_WAIT_TIME": "0"}
    base |= {"LOGINETL_CONCURRENCY": "1", "AWS_MAX_ATTEMPTS": "1"}
    return CliRunner().invoke(app, list(args), env=base | (env or {}), catch_exceptions=False)


def loginetl(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """loginetl as an operator runs it: its own process in `folder`, nothing of loginetl's or
    AWS's in the environment but what `env` sets and dummy credentials."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOGINETL_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "loginetl", *args],
        cwd=folder,
        env=clean | AWS_ENV | {"AWS_MAX_ATTEMPTS": "1"} | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the rule, directly ---------------------------------------------------------------------

MOTO, OTHER = "http://localhost:4566", "http://localhost:4599"
QUEUE = "http://localhost:4599/000000000000/login-queue"


@pytest.mark.parametrize(
    "queue_from, endpoint_from, used",
    [
        (CLI, DOTENV, "http://localhost:4599"),  # the report: --queue-url beats .env's endpoint
        (CLI, ENV, "http://localhost:4599"),
        (ENV, DOTENV, "http://localhost:4599"),
        (DOTENV, CLI, MOTO),  # --endpoint-url beats a queue URL from .env: asked of it
        (ENV, CLI, MOTO),
        (DOTENV, ENV, MOTO),
        (CLI, CLI, None),  # one level, two servers: nothing says which was meant, exit 2
        (ENV, ENV, None),
        (DOTENV, DOTENV, None),
    ],
)
def test_the_higher_source_of_queue_url_and_endpoint_names_the_server(
    queue_from, endpoint_from, used
):
    given_queue, given_endpoint = queue(QUEUE, queue_from), endpoint(MOTO, endpoint_from)
    if used:
        chosen = config.sqs_endpoint(given_queue, given_endpoint, [given_queue])
        assert chosen.url == used and chosen.outranked is (used != MOTO)
        return
    with pytest.raises(ConfigError) as conflict:
        config.sqs_endpoint(given_queue, given_endpoint, [given_queue])
    message = str(conflict.value)
    assert QUEUE in message and MOTO in message and "name different servers" in message
    assert given_queue.origin in message and given_endpoint.origin in message


def test_a_dead_letter_queue_url_outranked_by_the_endpoint_is_asked_of_it_else_refused():
    dlq = f"{MOTO}/000000000000/login-queue-dlq"
    from_dotenv = Given(dlq, DOTENV, "LOGINETL_DLQ_URL", "the DLQ")
    typed_queue = queue(QUEUE, CLI)
    chosen = config.sqs_endpoint(typed_queue, endpoint(MOTO, DOTENV), [typed_queue, from_dotenv])
    assert chosen.url == "http://localhost:4599"  # .env's DLQ URL yields to the typed queue's
    typed_dlq = Given(dlq, CLI, "--dlq-url", "the DLQ")
    dotenv_queue = queue(QUEUE, DOTENV)
    with pytest.raises(ConfigError) as conflict:
        config.sqs_endpoint(dotenv_queue, endpoint(OTHER, DOTENV), [dotenv_queue, typed_dlq])
    assert str(conflict.value).startswith(
        f"--dlq-url {dlq} (from the command line) and the endpoint {OTHER} (AWS_ENDPOINT_URL "
        "in .env) name different servers: "
    )


def test_the_conflict_line_names_both_values_and_where_each_came_from():
    with pytest.raises(ConfigError) as same_level:
        config.sqs_endpoint(queue(QUEUE, CLI), endpoint(MOTO, CLI), [queue(QUEUE, CLI)])
    assert str(same_level.value).startswith(
        f"--queue-url {QUEUE} (from the command line) and --endpoint-url {MOTO} (from the "
        "command line) name different servers: "
    )


@pytest.mark.parametrize(
    "url, same",
    [
        ("http://127.0.0.1:4566/0/q", True),
        ("https://localhost:4566/0/q", True),  # scheme-less: host and port only
        ("http://[::1]:4566/0/q", True),
        ("http://127.0.0.2:4566/0/q", True),  # 127.0.0.0/8 is loopback
        ("http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q", True),
        ("http://localhost.localstack.cloud:4566/000000000000/q", True),
        ("http://localhost:4599/0/q", False),
        ("http://localhost/0/q", False),  # port 80
        ("http://notlocalhost.localstack.cloud:4566/0/q", False),
        ("http://moto:4566/0/q", False),
    ],
)
def test_loopback_names_are_one_server(url, same):
    assert (config.server(url) == config.server("http://localhost:4566")) is same


def test_an_aws_host_on_either_side_is_not_a_conflict_and_aws_means_botocores_own():
    aws_queue = queue("https://sqs.eu-west-1.amazonaws.com/123456789012/logins", CLI)
    chosen = config.sqs_endpoint(aws_queue, endpoint(MOTO, DOTENV), [aws_queue])
    assert chosen.url is None and chosen.outranked  # AWS, and botocore told not to read .env's
    beside = config.sqs_endpoint(aws_queue, endpoint(MOTO, CLI), [aws_queue])
    assert beside.url == MOTO  # LocalStack and moto take AWS-style queue URLs
    to_aws = config.sqs_endpoint(
        queue(QUEUE, ENV), endpoint("https://sqs.eu-west-1.amazonaws.com", CLI)
    )
    assert to_aws.url == "https://sqs.eu-west-1.amazonaws.com"


def test_an_outranked_endpoint_is_not_read_by_botocore_either(monkeypatch):
    """A typed AWS queue URL beats AWS_ENDPOINT_URL from the environment: the client calls
    AWS, not the variable botocore would read on its own."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", MOTO)
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # the region: the queue URL's
    settings = Settings(
        queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/logins",
        endpoint_url=MOTO,
        sources=Sources(queue_url=CLI, endpoint_url=ENV),
    )
    assert settings.sqs_endpoint is None
    assert sqs.client(settings).meta.endpoint_url == "https://sqs.eu-west-1.amazonaws.com"
    env_queue = Settings(
        queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/logins",
        endpoint_url=MOTO,
        sources=Sources(queue_url=ENV, endpoint_url=ENV),
    )
    assert sqs.client(env_queue).meta.endpoint_url == MOTO


def test_the_default_queue_url_names_no_server_and_with_a_stream_the_dlq_is_sqs_home():
    settings = Settings(endpoint_url=OTHER, sources=Sources(endpoint_url=DOTENV))
    assert settings.sqs_endpoint == OTHER  # the default queue URL (port 4566) is not checked
    dlq = f"{OTHER}/000000000000/login-queue-dlq"
    reading = Settings(
        queue_url=f"{MOTO}/000000000000/login-queue",
        dlq_url=dlq,
        stream="logins",
        sources=Sources(queue_url=DOTENV, dlq_url=CLI),
    )
    assert reading.sqs_endpoint == OTHER  # the queue URL is not read: not checked either
    replaying = Settings(dlq_url=dlq, sources=Sources(queue_url=DEFAULT, dlq_url=ENV))
    assert replaying.sqs_endpoint == OTHER  # no queue URL given: the DLQ's host


def test_a_service_endpoint_variable_ranks_by_its_own_source(monkeypatch, tmp_path):
    """AWS_ENDPOINT_URL_SQS beats AWS_ENDPOINT_URL from one source (as in every AWS SDK), but
    from .env it is beaten by AWS_ENDPOINT_URL from the environment, and by a flag."""
    write_dotenv(tmp_path, AWS_ENDPOINT_URL_SQS="http://sqs-in-dotenv:1")
    config.load_dotenv(tmp_path / ".env")
    queue_url = "https://sqs.eu-west-1.amazonaws.com/1/q"
    general = Given("http://general:2", ENV, "AWS_ENDPOINT_URL", "the endpoint")
    assert config.explicit_endpoint("sqs", general) == general
    assert config.explicit_endpoint("sqs", None).value == "http://sqs-in-dotenv:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://sqs-in-env:3")
    assert config.explicit_endpoint("sqs", general).value == "http://sqs-in-env:3"
    settings = Settings(
        queue_url=queue_url,
        endpoint_url="http://typed:4",
        sources=Sources(queue_url=ENV, endpoint_url=CLI),
    )
    assert settings.sqs_endpoint == "http://typed:4"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "nonsense")
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL_SQS 'nonsense' is not an endpoint"):
        config.explicit_endpoint("sqs", None)


def test_dotenv_lines_are_told_apart_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LOGINETL_QUEUE_URL", "http://exported:1/0/q")
    write_dotenv(tmp_path, LOGINETL_QUEUE_URL="http://dotenv:1/0/q", LOGINETL_DLQ_URL="x")
    config.load_dotenv(tmp_path / ".env")
    config.load_dotenv(tmp_path / ".env")  # loaded twice in one command: still from .env
    assert os.environ["LOGINETL_QUEUE_URL"] == "http://exported:1/0/q"
    assert config.env_source("LOGINETL_QUEUE_URL") is ENV
    assert config.env_source("LOGINETL_DLQ_URL") is DOTENV
    assert config.env_source("LOGINETL_STREAM") is DEFAULT
    monkeypatch.setenv("LOGINETL_DLQ_URL", "y")  # set again by the environment: its own
    assert config.env_source("LOGINETL_DLQ_URL") is ENV


@pytest.mark.parametrize(
    "queue_from, stream_from, refused",
    [
        (DEFAULT, CLI, False),
        (ENV, CLI, False),  # a --stream typed beats a queue URL from the environment
        (DOTENV, ENV, False),  # LOGINETL_STREAM exported beats .env's queue URL
        (CLI, CLI, True),
        (ENV, ENV, True),
        (DOTENV, DOTENV, True),
        (ENV, DOTENV, True),  # the queue URL outranks: refused, never quietly read instead
        (CLI, ENV, True),
    ],
)
def test_a_stream_and_a_queue_url_from_one_level_are_two_sources(queue_from, stream_from, refused):
    assert config.two_sources(queue_from, stream_from) is refused


# --- through the CLI ---------------------------------------------------------------------------


def test_the_report_a_typed_queue_url_is_not_sent_to_the_dotenv_endpoint(
    queues, database_url, db, tmp_path
):
    """Issue 36: the local stack's .env (endpoint, queue, database, key) and `--queue-url`
    typed at a port where nothing listens. The run used to load the queue from the .env's
    endpoint while its summary named the URL typed; it must fail naming the typed URL's
    server and leave the .env's queue alone."""
    init(database_url)
    queues.send([VALID] * 3)
    write_dotenv(
        tmp_path,
        AWS_ENDPOINT_URL=queues.url.rsplit("/", 2)[0],
        LOGINETL_QUEUE_URL=queues.url,
        LOGINETL_DATABASE_URL=database_url,
        LOGINETL_MASK_KEY=MASK_KEY,
        LOGINETL_WAIT_TIME="0",
    )
    port = dead_port()
    typed = on_port(queues.url, port)
    result = loginetl(tmp_path, "run", "--queue-url", typed, "--json")
    assert result.returncode == 1, result.stderr
    assert f"http://localhost:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert queues.count() == 3 and rows(db) == []
    # The same .env naming the dead port as its queue URL: one level, two servers, exit 2.
    write_dotenv(
        tmp_path,
        AWS_ENDPOINT_URL=queues.url.rsplit("/", 2)[0],
        LOGINETL_QUEUE_URL=typed,
        LOGINETL_DATABASE_URL=database_url,
        LOGINETL_MASK_KEY=MASK_KEY,
    )
    result = loginetl(tmp_path, "run")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "name different servers" in line
    assert f"the queue URL {typed} (LOGINETL_QUEUE_URL in .env)" in line
    assert f"the endpoint {queues.url.rsplit('/', 2)[0]} (AWS_ENDPOINT_URL in .env)" in line
    assert queues.count() == 3 and rows(db) == []


def test_a_typed_queue_url_loads_from_its_own_server_and_json_names_it(
    sqs_endpoint, queues, database_url, db, tmp_path
):
    init(database_url)
    queues.send([VALID])
    dead = f"http://127.0.0.1:{dead_port()}"
    write_dotenv(tmp_path, AWS_ENDPOINT_URL=dead, LOGINETL_DATABASE_URL=database_url)
    result = invoke("run", "--queue-url", queues.url, "--json", "--log-format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["loaded"] == 1 and summary["endpoint"] == sqs_endpoint
    start = next(
        entry
        for line in result.stderr.splitlines()
        if (entry := json.loads(line))["event"] == "start"
    )
    assert start["endpoint"] == sqs_endpoint and start["queue_url"] == queues.url
    # From the environment it beats the .env's endpoint too.
    queues.send([VALID])
    result = invoke("run", "--json", env={"LOGINETL_QUEUE_URL": queues.url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["loaded"] == 1 and len(rows(db)) == 2


def test_a_typed_endpoint_beats_the_one_in_the_environment_and_in_dotenv(
    sqs_endpoint, queues, database_url, tmp_path
):
    """.env names a queue URL and an endpoint on ports where nothing listens: the endpoint
    with the higher precedence is the server called; from one level, the two are refused."""
    queues.send([VALID])
    dead = f"http://127.0.0.1:{dead_port()}"
    elsewhere = on_port(queues.url, dead_port())
    write_dotenv(tmp_path, AWS_ENDPOINT_URL=dead, LOGINETL_QUEUE_URL=elsewhere)
    result = invoke("peek", "--endpoint-url", sqs_endpoint, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["endpoint"] == sqs_endpoint and len(shown["messages"]) == 1
    assert shown["queue_url"] == elsewhere
    result = invoke("peek", "--json", env={"AWS_ENDPOINT_URL": sqs_endpoint})
    assert result.exit_code == 0, result.output  # the environment's beats .env's
    assert json.loads(result.stdout)["endpoint"] == sqs_endpoint
    result = invoke("peek", "--endpoint-url", sqs_endpoint, env={"AWS_ENDPOINT_URL": dead})
    assert result.exit_code == 0, result.output  # the flag beats the environment's
    result = invoke(
        "peek", env={"AWS_ENDPOINT_URL": sqs_endpoint, "LOGINETL_QUEUE_URL": dead + "/1/q"}
    )
    assert result.exit_code == 2
    assert (
        f"the queue URL {dead}/1/q (LOGINETL_QUEUE_URL in the environment) and the endpoint "
        in (result.stderr)
    )
    assert f"{sqs_endpoint} (AWS_ENDPOINT_URL in the environment) name different servers" in (
        result.stderr
    )


def test_the_dlq_url_flag_beats_the_environment_which_beats_dotenv(
    sqs, queues, database_url, tmp_path
):
    init(database_url)
    from_env, from_dotenv = make_queues(sqs), make_queues(sqs)
    write_dotenv(tmp_path, LOGINETL_DLQ_URL=from_dotenv.dlq_url)
    env = {"LOGINETL_QUEUE_URL": queues.url, "LOGINETL_DATABASE_URL": database_url}
    for args, extra, target in (
        ((), {}, from_dotenv),
        ((), {"LOGINETL_DLQ_URL": from_env.dlq_url}, from_env),
        (("--dlq-url", queues.dlq_url), {"LOGINETL_DLQ_URL": from_env.dlq_url}, queues),
    ):
        queues.send([INVALID])
        result = invoke("run", "--json", *args, env=env | extra)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["dlq_url"] == target.dlq_url
        assert target.count(target.dlq_url) == 1
        target.drain(target.dlq_url)
    assert all(q.count(q.dlq_url) == 0 for q in (queues, from_env, from_dotenv))


def test_a_dlq_url_the_endpoint_outranks_is_asked_of_it_one_it_does_not_is_refused(
    queues, database_url, tmp_path
):
    init(database_url)
    stray = on_port(queues.dlq_url, dead_port())  # the DLQ's path, on a dead port
    write_dotenv(tmp_path, LOGINETL_DLQ_URL=stray, LOGINETL_DATABASE_URL=database_url)
    queues.send([INVALID])
    result = invoke("run", "--queue-url", queues.url, "--json")
    assert result.exit_code == 0, result.output  # --queue-url's server beats .env's DLQ URL's
    assert json.loads(result.stdout)["dead_lettered"] == 1
    assert queues.count(queues.dlq_url) == 1
    queues.send([VALID])
    write_dotenv(tmp_path, LOGINETL_QUEUE_URL=queues.url, LOGINETL_DATABASE_URL=database_url)
    result = invoke("run", "--dlq-url", stray)
    assert result.exit_code == 2
    assert f"--dlq-url {stray} (from the command line) and the endpoint " in result.stderr
    assert "(the host of the queue URL, LOGINETL_QUEUE_URL in .env) name different" in (
        result.stderr
    )
    assert queues.count() == 1
    result = invoke("status", "--dlq-url", queues.dlq_url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dlq"]["url"] == queues.dlq_url and report["endpoint"] in queues.url


def test_replay_and_verify_masking_follow_the_same_rule(
    sqs_endpoint, queues, database_url, tmp_path
):
    init(database_url)
    dead = f"http://127.0.0.1:{dead_port()}"
    write_dotenv(tmp_path, AWS_ENDPOINT_URL=dead, LOGINETL_DATABASE_URL=database_url)
    queues.send([INVALID], queues.dlq_url)
    typed = ("--dlq-url", queues.dlq_url, "--queue-url", queues.url)
    result = invoke("replay-dlq", *typed, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["endpoint"] == sqs_endpoint
    stray = on_port(queues.url, dead_port())
    result = invoke("replay-dlq", *typed, "--to-queue", stray, "--dry-run")
    assert result.exit_code == 2
    assert f"--to-queue {stray} (from the command line) and the endpoint " in result.stderr
    queues.send([VALID])
    result = invoke("verify-masking", "--from-queue", "1", "--queue-url", queues.url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["endpoint"] == sqs_endpoint


def test_the_database_url_flag_beats_the_environment_which_beats_dotenv(database_url, tmp_path):
    """Each source's URL or _FILE at its own level: the higher level wins, whichever form it
    takes; both forms at one level is exit 2. A database that does not exist names itself."""
    base = database_url.rpartition("/")[0]
    missing = f"{base}/loginetl_missing_{uuid.uuid4().hex[:8]}"
    wanted = database_url.rpartition("/")[2]

    def holding(url: str) -> str:
        """A new file holding `url` (each its own path: no value seen twice in one process,
        where an earlier .env's value set again by the environment looks like the .env's)."""
        path = tmp_path / f"{uuid.uuid4().hex}.url"
        path.write_text(url + "\n")
        return str(path)

    file = "LOGINETL_DATABASE_URL_FILE"
    cases = [
        ({"LOGINETL_DATABASE_URL": missing}, {"LOGINETL_DATABASE_URL": database_url}, ()),
        ({file: holding(missing)}, {"LOGINETL_DATABASE_URL": database_url}, ()),
        ({"LOGINETL_DATABASE_URL": missing}, {file: holding(database_url)}, ()),
        ({}, {file: holding(missing)}, ("--database-url", database_url)),
        ({"LOGINETL_DATABASE_URL": database_url}, {}, ()),
    ]
    for dotenv_lines, env, args in cases:
        write_dotenv(tmp_path, **dotenv_lines)
        result = invoke("init-db", "--json", *args, env=env)
        assert result.exit_code == 0, (dotenv_lines, env, result.output)
        assert json.loads(result.stdout)["database"].endswith(f"/{wanted}")
    write_dotenv(tmp_path, LOGINETL_DATABASE_URL=database_url)
    result = invoke("init-db", env={"LOGINETL_DATABASE_URL": missing})
    assert result.exit_code == 1 and missing.rpartition("/")[2] in result.stderr
    write_dotenv(tmp_path, LOGINETL_DATABASE_URL=database_url, **{file: holding(database_url)})
    result = invoke("init-db")
    assert result.exit_code == 2
    assert "both LOGINETL_DATABASE_URL and LOGINETL_DATABASE_URL_FILE are set" in result.stderr


def test_a_stream_from_a_higher_source_beats_a_queue_url_and_one_from_the_same_is_refused(
    queues, tmp_path
):
    """Refused before any server is called: the stream's own checks (no --dlq-url) come
    after."""
    write_dotenv(tmp_path, LOGINETL_QUEUE_URL=queues.url)
    exported = invoke("run", env={"LOGINETL_STREAM": "logins"})
    assert exported.exit_code == 2 and "two sources" not in exported.stderr
    write_dotenv(tmp_path, LOGINETL_QUEUE_URL=queues.url, LOGINETL_STREAM="logins")
    both = invoke("run")
    assert both.exit_code == 2 and "name two sources" in both.stderr
    write_dotenv(tmp_path, LOGINETL_STREAM="logins")
    outranked = invoke("run", env={"LOGINETL_QUEUE_URL": queues.dlq_url})  # not .env's value
    assert outranked.exit_code == 2 and "name two sources" in outranked.stderr
