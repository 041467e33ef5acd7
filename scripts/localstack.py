#!/usr/bin/env python3
"""LocalStack's SQS on loopback, without Docker: for benchmarks/, or by hand.

    python scripts/localstack.py up [--port 4566]   # install if needed, start, print the endpoint
    python scripts/localstack.py status
    python scripts/localstack.py down [--purge]     # --purge also deletes .localstack/

LocalStack 4.14 needs Python 3.13, so it gets a virtualenv of its own (.localstack/venv, from
scripts/localstack-requirements.txt), found through $PYTHON313, `pyenv prefix 3.13`, or
python3.13 on PATH. Stdlib only: it runs under any Python 3.9+, the project's .venv included.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "scripts" / "localstack-requirements.txt"
DEFAULT_ROOT = REPO / ".localstack"
DEFAULT_PORT = 4566
HOST = "127.0.0.1"  # loopback only, always
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def data(self) -> Path:  # LocalStack's FILESYSTEM_ROOT: state, cache, tmp
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "localstack.log"

    @property
    def state(self) -> Path:  # {"pid": ..., "endpoint": ...} of the server we started
        return self.root / "server.json"

    @property
    def stamp(self) -> Path:  # hash of the requirements the venv was built from
        return self.venv / ".requirements.sha256"


class LocalStackError(Exception):
    pass


def find_python313() -> str:
    """An interpreter for LocalStack: $PYTHON313, pyenv's 3.13, or python3.13 on PATH."""
    candidates = [os.environ.get("PYTHON313", "")]
    try:
        prefix = subprocess.run(
            ["pyenv", "prefix", "3.13"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        candidates.append(os.path.join(prefix, "bin", "python3.13") if prefix else "")
    except (OSError, subprocess.SubprocessError):
        pass
    candidates.append(shutil.which("python3.13") or "")
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(
        glob.glob(os.path.join(pyenv_root, "versions", "3.13*", "bin", "python3.13"))
    )
    for candidate in filter(None, candidates):
        if _is_python313(candidate):
            return candidate
    raise LocalStackError(
        "LocalStack needs Python 3.13: set PYTHON313=/path/to/python3.13 (or `pyenv install 3.13`)"
    )


def _is_python313(executable: str) -> bool:
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return result.stdout.strip() == "True"


def ensure_venv(paths: Paths, quiet: bool = False) -> None:
    """Create the virtualenv and install the pinned requirements, unless already done."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if paths.python.exists() and paths.stamp.exists() and paths.stamp.read_text() == wanted:
        return
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr))
    if not paths.python.exists():
        say(f"creating {paths.venv} (Python 3.13) for LocalStack")
        subprocess.run([find_python313(), "-m", "venv", str(paths.venv)], check=True)
    say(f"installing {REQUIREMENTS.name} into {paths.venv} (about a minute the first time)")
    subprocess.run(
        [str(paths.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REQUIREMENTS)],
        check=True,
    )  # fmt: skip
    paths.stamp.write_text(wanted)


def pick_port(preferred: int) -> int:
    """The preferred port when nothing listens there on loopback, else one the kernel picks."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            # As servers do: connections of a previous run in TIME_WAIT do not make it taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise LocalStackError("no free port on 127.0.0.1")


def server_environment(paths: Paths, port: int) -> dict[str, str]:
    environment = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("AWS_", "LOCALSTACK_", "PYTHON"))  # nothing of ours leaks in
    }  # fmt: skip
    environment.update(
        OVERRIDE_IN_DOCKER="0",  # it is not in a container: no Docker checks or helpers
        SERVICES="sqs",
        EAGER_SERVICE_LOADING="1",  # load SQS now, so "ready" means ready to answer
        GATEWAY_LISTEN=f"{HOST}:{port}",
        # The default (twisted) server listens on every interface whatever it is told;
        # hypercorn keeps to the address given.
        GATEWAY_SERVER="hypercorn",
        LOCALSTACK_HOST=f"{HOST}:{port}",  # queue URLs name 127.0.0.1, not *.localstack.cloud
        DNS_ADDRESS="0",  # no DNS server of its own
        DISABLE_EVENTS="1",  # no analytics sent out
        SKIP_SSL_CERT_DOWNLOAD="1",  # otherwise it fetches a TLS cert from the internet at start
        SQS_ENDPOINT_STRATEGY="off",  # http://host:port/<account>/<queue>, like AWS's path style
        SQS_DISABLE_CLOUDWATCH_METRICS="1",  # no CloudWatch here to report to
        FILESYSTEM_ROOT=str(paths.data),
    )
    # Not a line per request (17 MB per benchmark run); LS_LOG=info in our environment wins.
    environment.setdefault("LS_LOG", "warn")
    return environment


def start(root: Path = DEFAULT_ROOT, port: int = DEFAULT_PORT, quiet: bool = False) -> str:
    """Start LocalStack (installing it first if needed), wait until SQS answers; the endpoint."""
    paths = Paths(root)
    running = status(root)
    if running:
        return running
    ensure_venv(paths, quiet)
    port = pick_port(port)
    if port != DEFAULT_PORT and not quiet:
        print(f"port {DEFAULT_PORT} is taken: LocalStack goes on {port}", file=sys.stderr)
    shutil.rmtree(paths.data, ignore_errors=True)  # a fresh start: no queues from last time
    paths.data.mkdir(parents=True)
    endpoint = f"http://{HOST}:{port}"
    with paths.log.open("wb") as log:  # the log of this server only
        process = subprocess.Popen(
            [str(paths.python), "-m", "localstack.runtime.main"],
            env=server_environment(paths, port),
            cwd=paths.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one, not by our Ctrl-C
        )
    paths.state.write_text(json.dumps({"pid": process.pid, "endpoint": endpoint}))
    try:
        wait_until_ready(endpoint, process)
    except BaseException:
        stop(root)
        raise
    return endpoint


def wait_until_ready(
    endpoint: str, process: subprocess.Popen, timeout: float = START_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalStackError(f"LocalStack exited with {process.returncode}: see its log")
        if sqs_is_up(endpoint):
            return
        time.sleep(0.3)
    raise LocalStackError(f"LocalStack did not answer on {endpoint} within {timeout:.0f} s")


def sqs_is_up(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response:
            health = json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return health.get("services", {}).get("sqs") in ("available", "running")


def status(root: Path = DEFAULT_ROOT) -> str | None:
    """The endpoint of the LocalStack we started, when it still runs and answers."""
    server = _our_server(Paths(root))
    return server["endpoint"] if server and sqs_is_up(server["endpoint"]) else None


def server_pid(root: Path = DEFAULT_ROOT) -> int | None:
    """The pid of the LocalStack we started, when it still runs."""
    server = _our_server(Paths(root))
    return server["pid"] if server else None


def _our_server(paths: Paths) -> dict | None:
    """The recorded server, only if that pid is still LocalStack (pids get reused)."""
    try:
        server = json.loads(paths.state.read_text())
        command = Path(f"/proc/{server['pid']}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError):
        return None
    return server if b"localstack.runtime.main" in command else None


def stop(root: Path = DEFAULT_ROOT, purge: bool = False) -> bool:
    """Stop the LocalStack we started (its process group); True if one was running."""
    paths = Paths(root)
    server = _our_server(paths)
    if server:
        _terminate_group(server["pid"])
    paths.state.unlink(missing_ok=True)
    if purge:
        shutil.rmtree(paths.root, ignore_errors=True)
    return server is not None


def _terminate_group(pid: int, grace: float = 15.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)  # pid is the group id: started with start_new_session
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit of a server started by this very process, so it is not left a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="our folder (default .localstack/)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="install if needed, start, wait until SQS answers")
    up.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="preferred port (next free one if taken)"
    )
    commands.add_parser("status", help="print the endpoint if ours is running")
    down = commands.add_parser("down", help="stop it")
    down.add_argument("--purge", action="store_true", help="also delete the folder (venv included)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(start(args.root, args.port))
        elif args.command == "status":
            endpoint = status(args.root)
            print(endpoint or "not running")
            return 0 if endpoint else 1
        else:
            print("stopped" if stop(args.root, args.purge) else "was not running")
    except (LocalStackError, subprocess.CalledProcessError) as error:
        print(f"error: {error} (log: {Paths(args.root).log})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
