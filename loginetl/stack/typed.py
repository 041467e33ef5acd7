"""How the operator types what the stack prints: paths, and the commands of its hints.

Standard library only (kinesis_mock.py, which scripts/kinesis.py imports under a plain python3,
names a command in its messages).
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
from pathlib import Path

SCRIPTS = ("loginetl", "loginetl-stack")  # the console scripts of the package, side by side


def shown(path: Path) -> str:
    """A path as the operator would type it: relative to the current folder when inside it."""
    path = path.resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd())) or "."
    return str(path)


def command(name: str = "loginetl-stack") -> str:
    """The console script `name` as the operator can type it here, for a hint that works as
    printed: the bare name when the shell's PATH finds this installation's script (an activated
    venv, a pip or pipx install), else its path, beside the script this process was started by
    (`.venv/bin/loginetl-stack` in a checkout whose venv is not activated). A hard-coded
    `.venv/bin/` would be wrong for a wheel installed anywhere else."""
    started = Path(sys.argv[0])
    folder = started.parent if started.name in SCRIPTS else Path(sys.executable).parent
    script = folder / name
    if not script.is_file():
        return name
    found = shutil.which(name)
    if found is not None and Path(found).resolve() == script.resolve():
        return name
    path = shown(script)
    return shlex.quote(path if "/" in path else f"./{path}")


def hint(args: str, stack_dir: Path | None = None, env_file: Path | None = None) -> str:
    """`loginetl-stack ARGS` as typed here, with --dir and --env-file where they are not the
    defaults (the command would otherwise act on another stack)."""
    words = [command(), args]
    if stack_dir is not None and stack_dir.resolve() != Path(".loginetl-stack").resolve():
        words.append(f"--dir {shlex.quote(shown(stack_dir))}")
    if env_file is not None and env_file.resolve() != Path(".env").resolve():
        words.append(f"--env-file {shlex.quote(shown(env_file))}")
    return " ".join(words)
