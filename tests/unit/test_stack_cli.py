"""What `loginetl-stack` prints, without servers: the places that show the database's DSN never
show its password, whether the DSN is a URL or key=value words. The real stack is in
test_devstack.py."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from loginetl.stack import cli as stack_cli
from loginetl.stack import up_steps as stack_up_steps
from loginetl.stack.cli import app

SECRET = "s3cret-Pw"
DSNS = {
    "url": f"postgresql://postgres:{SECRET}@localhost:5432/postgres",
    "keywords": f"host=127.0.0.1 port=5432 dbname=postgres user=postgres password={SECRET}",
    "quoted keywords": f"host=127.0.0.1 dbname=postgres user=postgres password='{SECRET} x'",
}


def assert_hidden(output: str) -> None:
    """The password is nowhere in output, not even folded over two lines; *** stands for it."""
    assert SECRET not in "".join(output.split())
    assert "***" in output


@pytest.mark.parametrize("dsn", DSNS.values(), ids=DSNS.keys())
def test_status_never_shows_the_database_password(dsn, tmp_path, monkeypatch):
    monkeypatch.setattr(stack_cli, "running_sqs_server", lambda stack_dir: None)
    monkeypatch.setattr(stack_cli, "running_kinesis_mock", lambda stack_dir: None)
    monkeypatch.setattr(stack_cli, "running_postgres", lambda data_dir: (4242, 5432))
    monkeypatch.setattr(stack_cli, "postgres_dsn", lambda password, port: dsn)
    result = CliRunner().invoke(app, ["status", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "PostgreSQL: running on " in result.output
    assert_hidden(result.output)


@pytest.mark.parametrize("dsn", DSNS.values(), ids=DSNS.keys())
def test_up_never_shows_the_database_password(dsn, tmp_path, monkeypatch):
    output = io.StringIO()
    monkeypatch.setattr(stack_up_steps, "console", Console(file=output, width=400))
    monkeypatch.setattr(stack_up_steps, "stream_shards", lambda endpoint: 2)
    stream = stack_up_steps.Stream("http://localhost:4568", True, True)
    queues = ("http://q", "http://dlq")
    stack_up_steps.show_stack("http://localhost:4566", queues, stream, dsn, tmp_path / ".env")
    assert "PostgreSQL" in output.getvalue()
    assert_hidden(output.getvalue())
