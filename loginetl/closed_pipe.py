"""A reader that closes our output early (`loginetl status --json | head -1`), for both console
scripts: the command ends quietly with the status of a Unix tool that SIGPIPE ended."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import rich.console
import typer
from typer.core import TyperGroup

from .errors import EXIT_CLOSED_PIPE


def closed_pipe() -> NoReturn:
    """End now, writing nothing more anywhere: what is still buffered goes to /dev/null, so
    the interpreter's last flush cannot fail either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        os.dup2(devnull, stream.fileno())
    raise typer.Exit(EXIT_CLOSED_PIPE)


class QuietOnClosedPipe(TyperGroup):
    """A closed pipe met while writing --help (of the group or a command) or while a command
    runs ends quietly; click alone would exit 1."""

    def make_context(self, *args, **kwargs):
        try:  # the group's --help is written while parsing
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            closed_pipe()

    def invoke(self, ctx):
        try:  # a command's --help, and whatever a command writes
            return super().invoke(ctx)
        except BrokenPipeError:
            closed_pipe()


class Console(rich.console.Console):
    """A rich console that ends a closed pipe as `closed_pipe` does (rich alone exits 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        closed_pipe()
