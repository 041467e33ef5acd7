"""How `loginetl-stack` prints: one console, one message a line, paths as the operator types them.

cli.py and up_steps.py print through here; the other modules of the stack never print.
"""

from __future__ import annotations

from ..closed_pipe import Console
from .typed import shown

__all__ = ["console", "say", "shown"]

console = Console(highlight=False)


def say(message: str) -> None:
    """Print one message on one line."""
    # No markup (messages may contain [brackets]) and no wrapping (one message, one line).
    console.print(message, markup=False, soft_wrap=True)
