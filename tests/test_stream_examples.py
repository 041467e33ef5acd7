"""The examples that read or write a Kinesis stream (`--stream`, `--to-stream`), from each
command's --help and from the docs' bash blocks, run as written against kinesis-mock, with the
local stack's stream (`login-stream`) and its settings in the environment (the dead-letter queue
in LOGINETL_DLQ_URL, as `loginetl-stack up` writes it to .env). tests/test_examples.py runs every
other example and leaves these to this file. Where kinesis-mock cannot start they skip, saying
why, and under CI they fail (tests/support/ci.py)."""

from __future__ import annotations

import subprocess

import pytest

from loginetl.stack.kinesis import STREAM_NAME
from tests.support.data import rows
from tests.support.servers import MADE_STREAMS, Stream
from tests.test_examples import (
    assert_ran,
    example_env,  # noqa: F401 - a fixture, used by name
    help_examples,
    readme_examples,
    reads_a_stream,
    run_example,
)


def stream_examples() -> list[str]:
    """Every `loginetl` example line naming a stream, --help's and the docs', once each."""
    lines = [line for _, line in help_examples()]
    lines += [line for line in readme_examples() if line.startswith("loginetl ")]
    return list(dict.fromkeys(line for line in lines if reads_a_stream(line)))


@pytest.fixture
def stack_stream(kinesis, kinesis_endpoint, example_env) -> tuple[Stream, dict]:  # noqa: F811
    """The local stack's stream on kinesis-mock (deleted after the test), and the examples'
    environment pointing at it."""
    stream = Stream(kinesis, STREAM_NAME)
    if STREAM_NAME not in kinesis.list_streams()["StreamNames"]:
        kinesis.create_stream(StreamName=STREAM_NAME, ShardCount=2)
    MADE_STREAMS.append(stream)
    stream.wait_active()
    return stream, example_env | {"AWS_ENDPOINT_URL_KINESIS": kinesis_endpoint}


def test_the_stream_examples_are_found_in_help_and_docs():
    examples = stream_examples()
    for command in ("run", "status", "peek", "replay-dlq"):
        assert any(line.startswith(f"loginetl {command} ") for line in examples), command
    assert any("--follow" in line for line in examples)


@pytest.mark.slow  # each stream example end to end, a follower among them: about 20 s
def test_every_stream_example_runs_as_written(stack_stream, db, tmp_path):
    stream, env = stack_stream
    stream.put_sample()
    subprocess.run(["loginetl", "init-db"], env=env, cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    examples = sorted(stream_examples(), key=lambda line: "--follow" in line)
    for line in examples:
        assert_ran(run_example(line, env, tmp_path), line)
    assert len(rows(db)) == 99  # a run read the stream's sample; the others only looked
