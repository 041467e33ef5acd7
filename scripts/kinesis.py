#!/usr/bin/env python3
"""kinesis-mock (npm's `kinesis-local`) on loopback: a Kinesis server for the tests, the
benchmark, or by hand. It reshards as AWS does (a split parent closes and names its children),
which moto's Kinesis does not.

    python scripts/kinesis.py install                # into .kinesis-mock/ (needs Node and npm)
    python scripts/kinesis.py up [--port 4568]       # install if needed, start, print the endpoint
    python scripts/kinesis.py status
    python scripts/kinesis.py down [--purge]         # --purge also deletes .kinesis-mock/

`install` needs only the standard library: CI runs it with the system python3, before the venv
exists. `install` and `start` take the pinned version and the settings kinesis-mock runs with
from loginetl.stack.kinesis_mock (one definition for `loginetl-stack` and this script; standard
library only too), out of this checkout where loginetl is not installed. The tests and the
stream benchmark import `start` and `stop` from here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO / ".kinesis-mock"
DEFAULT_PORT = 4568
HOST = "127.0.0.1"
START_TIMEOUT = 60.0


class KinesisMockError(Exception):
    pass


@dataclass(frozen=True)
class Server:
    pid: int
    endpoint: str
    process: subprocess.Popen | None = None


def main_js(root: Path = DEFAULT_ROOT) -> Path:
    return _stack_kinesis_mock().main_js(root)


def missing_reason() -> str | None:
    """Why kinesis-mock cannot run here, or None."""
    if shutil.which("node") is None:
        return "kinesis-mock needs Node.js (`node` on PATH): apt-get install nodejs npm"
    if not main_js().exists() and shutil.which("npm") is None:
        return "kinesis-mock is not installed and npm is missing to install it"
    return None


def install(root: Path = DEFAULT_ROOT) -> Path:
    """npm install kinesis-local into `root` (a project-local, git-ignored folder), once: as
    `loginetl-stack install-kinesis` does, with the same pinned version."""
    kinesis_mock = _stack_kinesis_mock()
    try:
        return kinesis_mock.install_kinesis_mock(root)[0]
    except kinesis_mock.StackError as error:
        raise KinesisMockError(str(error)) from error


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start(port: int | None = None, root: Path = DEFAULT_ROOT, log: Path | None = None) -> Server:
    """Start kinesis-mock on plain HTTP at `port` (free one if None); wait until it answers."""
    script = install(root)
    node = shutil.which("node")
    if node is None:
        raise KinesisMockError("kinesis-mock needs Node.js: `node` is not on PATH")
    port = port or free_port()
    env = _stack_kinesis_mock().kinesis_mock_env(script, port, free_port())
    with open(log or os.devnull, "ab") as output:
        process = subprocess.Popen(
            [node, str(script)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(port):
        if process.poll() is not None:
            raise KinesisMockError(f"kinesis-mock exited with {process.returncode} on start")
        if time.monotonic() > deadline:
            process.kill()
            raise KinesisMockError(f"kinesis-mock did not answer within {START_TIMEOUT:g} s")
        time.sleep(0.2)
    return Server(process.pid, f"http://{HOST}:{port}", process)


def _stack_kinesis_mock() -> ModuleType:
    """loginetl.stack.kinesis_mock: the installed loginetl's, else this checkout's."""
    try:
        from loginetl.stack import kinesis_mock
    except ImportError:
        sys.path.insert(0, str(REPO))
        from loginetl.stack import kinesis_mock
    return kinesis_mock


PACKAGE = _stack_kinesis_mock().KINESIS_MOCK_PACKAGE  # the version installed (benchmarks cite it)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def stop(server: Server) -> None:
    """It keeps nothing worth a clean shutdown (no persistence): SIGKILL, and reap it."""
    try:
        os.kill(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if server.process is not None:
        server.process.wait()


def _state(root: Path) -> Path:
    return root / "server.json"


def _running(root: Path) -> Server | None:
    try:
        state = json.loads(_state(root).read_text())
        os.kill(state["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return Server(state["pid"], state["endpoint"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install")
    up = commands.add_parser("up")
    up.add_argument("--port", type=int, default=DEFAULT_PORT)
    commands.add_parser("status")
    down = commands.add_parser("down")
    down.add_argument("--purge", action="store_true")
    args = parser.parse_args(argv)
    root = DEFAULT_ROOT
    try:
        if args.command == "install":
            print(install(root))
        elif args.command == "up":
            server = _running(root)
            if server is None:
                server = start(args.port, root, root / "kinesis-mock.log")
                _state(root).write_text(
                    json.dumps({"pid": server.pid, "endpoint": server.endpoint})
                )
            print(server.endpoint)
        elif args.command == "status":
            server = _running(root)
            print(f"running at {server.endpoint} (pid {server.pid})" if server else "not running")
            return 0 if server else 1
        else:
            server = _running(root)
            if server is not None:
                stop(server)
            _state(root).unlink(missing_ok=True)
            if args.purge:
                shutil.rmtree(root, ignore_errors=True)
    except KinesisMockError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
