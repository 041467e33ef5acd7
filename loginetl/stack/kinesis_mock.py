"""kinesis-mock (npm's `kinesis-local` under Node.js) as a server of the stack folder: where it is
installed, installing it (npm, only when asked: `loginetl-stack install-kinesis`), whether it
can run here, the settings it starts with, launching and stopping it.

Standard library only: scripts/kinesis.py installs and starts kinesis-mock with these same
settings under a plain python3, where loginetl's dependencies (boto3, moto) may be missing.
Waiting until it answers takes a Kinesis client, so that is in kinesis.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .processes import BackgroundServer, StackError, first_free_port, last_line_of
from .typed import command

# Where `loginetl-stack install-kinesis` installs it (in the current folder) and
# scripts/kinesis.py (in the checkout); `up` looks in both.
KINESIS_MOCK_DIR = ".kinesis-mock"
CHECKOUT = Path(__file__).resolve().parents[2]  # the checkout loginetl runs from, if it does
KINESIS_MOCK_PACKAGE = "kinesis-local@0.6.2"
NPM_TIMEOUT = 600
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


def main_js(root: Path) -> Path:
    """Where main.js of a kinesis-mock installed into the folder root is."""
    return root / "node_modules" / "kinesis-local" / "main.js"


def kinesis_mock_script() -> Path | None:
    """main.js of an installed kinesis-mock: in the current folder's .kinesis-mock/, else in the
    checkout loginetl runs from; None when neither has it."""
    for root in (Path.cwd(), CHECKOUT):
        script = main_js(root / KINESIS_MOCK_DIR)
        if script.is_file():
            return script
    return None


def kinesis_mock_missing() -> str | None:
    """Why kinesis-mock cannot run here (the stream then goes on moto), or None."""
    if shutil.which("node") is None:
        return "Node.js is missing"
    if kinesis_mock_script() is None:
        return f"kinesis-mock is not installed (`{command()} install-kinesis` installs it)"
    return None


def install_kinesis_mock(root: Path) -> tuple[Path, bool]:
    """npm install the pinned kinesis-local into the folder root, unless it is there; returns
    its main.js and whether it was installed now."""
    script = main_js(root)
    if script.is_file():
        return script, False
    npm = shutil.which("npm")
    if npm is None:
        raise StackError("npm is missing: install Node.js and npm (apt-get install nodejs npm)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(root),
                KINESIS_MOCK_PACKAGE,
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"npm install {KINESIS_MOCK_PACKAGE} failed: {exc}") from exc
    if done.returncode != 0 or not script.is_file():
        last = last_line_of(done.stderr) or last_line_of(done.stdout) or "no output"
        raise StackError(f"npm install {KINESIS_MOCK_PACKAGE} failed: {last}")
    return script, True


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
