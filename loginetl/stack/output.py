"""How `loginetl-stack` prints: one console, one message a line, paths as the operator types them.

cli.py and up_steps.py print through here; the other modules of the stack never print.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..closed_pipe import Console

console = Console(highlight=False)


def say(message: str) -> None:
    """Print one message on one line."""
    # No markup (messages may contain [brackets]) and no wrapping (one message, one line).
    console.print(message, markup=False, soft_wrap=True)


def shown(path: Path) -> str:
    """A path as the operator would type it: relative to the current folder when inside it."""
    path = path.resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd())) or "."
    return str(path)
