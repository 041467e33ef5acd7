"""kinesis-mock (npm's `kinesis-local` under Node.js) as a server of the stack folder: where it is
installed, whether it can run here, the settings it starts with, launching and stopping it.

Standard library only: scripts/kinesis.py starts kinesis-mock with these same settings under a
plain python3, where loginetl's dependencies (boto3, moto) may be missing. Waiting until it
answers takes a Kinesis client, so that is in kinesis.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .processes import BackgroundServer, StackError, first_free_port

KINESIS_MOCK_DIR = ".kinesis-mock"  # where scripts/kinesis.py installs it, in the checkout
KINESIS_MOCK_HINT = "kinesis-local"  # in its command line: node .../kinesis-local/main.js
DEFAULT_KINESIS_PORT = 4568
KINESIS_PID_FILE = "kinesis.pid"
KINESIS_PORT_FILE = "kinesis.port"
KINESIS_LOG_FILE = "kinesis.log"

# kinesis-mock as a background process of the stack folder.
KINESIS_MOCK = BackgroundServer(
    "kinesis-mock", KINESIS_MOCK_HINT, KINESIS_PID_FILE, KINESIS_PORT_FILE, KINESIS_LOG_FILE
)

# kinesis-mock delays creating, deleting and resharding a stream unless told not to; whoever
# starts it waits for those, so every delay is zero.
NO_DELAYS = {
    name: "0ms"
    for name in (
        "CREATE_STREAM_DURATION",
        "DELETE_STREAM_DURATION",
        "MERGE_SHARDS_DURATION",
        "SPLIT_SHARD_DURATION",
        "UPDATE_SHARD_COUNT_DURATION",
    )
}


def kinesis_mock_env(script: Path, port: int, tls_port: int) -> dict[str, str]:
    """The environment kinesis-mock starts with: plain HTTP at port, no delays, warnings only,
    nothing kept on disk. It always serves TLS too, at tls_port, which nothing else uses."""
    return (
        os.environ
        | NO_DELAYS
        | {
            "KINESIS_MOCK_PLAIN_PORT": str(port),
            "KINESIS_MOCK_TLS_PORT": str(tls_port),
            "KINESIS_MOCK_CERT_PATH": str(script.parent / "server.json"),
            "LOG_LEVEL": "WARN",
            "SHOULD_PERSIST_DATA": "false",
        }
    )


def kinesis_mock_script() -> Path | None:
    """main.js of an installed kinesis-mock: in the current folder's .kinesis-mock/, else in the
    checkout loginetl runs from; None when neither has it."""
    checkout = Path(__file__).resolve().parents[2]
    for root in (Path.cwd(), checkout):
        script = root / KINESIS_MOCK_DIR / "node_modules" / "kinesis-local" / "main.js"
        if script.is_file():
            return script
    return None


def kinesis_mock_missing() -> str | None:
    """Why kinesis-mock cannot run here (the stream then goes on moto), or None."""
    if shutil.which("node") is None:
        return "Node.js is missing"
    if kinesis_mock_script() is None:
        return "kinesis-mock is not installed (python scripts/kinesis.py install)"
    return None


def running_kinesis_mock(stack_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the stack folder's kinesis-mock when it runs, else None."""
    return KINESIS_MOCK.running(stack_dir)


def launch_kinesis_mock(stack_dir: Path, port: int, exclude: tuple[int, ...]) -> int:
    """Start kinesis-mock in the background on plain HTTP at port; returns its pid. Its TLS port
    is the first free one above port, none of exclude (ports of servers not listening yet)."""
    script, node = kinesis_mock_script(), shutil.which("node")
    if script is None or node is None:
        raise StackError(f"cannot start kinesis-mock: {kinesis_mock_missing()}")
    tls_port = first_free_port(port + 1, (*exclude, port))
    env = kinesis_mock_env(script, port, tls_port)
    return KINESIS_MOCK.launch(stack_dir, port, [node, str(script)], script.parent, env)


def stop_kinesis_mock(stack_dir: Path) -> None:
    """Stop the stack folder's kinesis-mock, if it runs (it keeps nothing: in memory only)."""
    KINESIS_MOCK.stop(stack_dir)
