#!/usr/bin/env python3
"""Write docs/cli.md, the CLI reference, from the commands' own help, with Typer's docs
generator (the `typer ... utils docs` of the typer package):

    .venv/bin/python scripts/cli_docs.py          # rewrite docs/cli.md
    .venv/bin/python scripts/cli_docs.py --check  # exit 1 when the page and the code disagree

tests/test_docs.py runs the check, so a help text changed without the page fails the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "cli.md"
APPS = (("loginetl.cli", "loginetl"), ("loginetl.stack.cli", "loginetl-stack"))
HEADER = (
    "# CLI reference\n\n"
    "Generated from each command's own `--help` by `scripts/cli_docs.py` (do not edit by hand:\n"
    "the suite fails when this page and the code disagree).\n"
)


def generate() -> str:
    typer = Path(sys.executable).parent / "typer"
    parts = [HEADER]
    for module, name in APPS:
        done = subprocess.run(
            [str(typer), module, "utils", "docs", "--name", name],
            capture_output=True, text=True, check=True, cwd=REPO,
            env=os.environ | {"COLUMNS": "100", "NO_COLOR": "1"},
        )  # fmt: skip
        lines = examples_as_code(done.stdout.strip().splitlines())
        parts.append("\n".join("#" + line if line.startswith("#") else line for line in lines))
    return "\n\n".join(parts) + "\n"


def examples_as_code(lines: list[str]) -> list[str]:
    """click's no-rewrap marker (a line holding only a backspace) before an indented block of
    examples becomes a fenced code block: as typer writes it, the page holds a control
    character and the examples run on as one paragraph."""
    out: list[str] = []
    index = 0
    while index < len(lines):
        if lines[index] != "\b":
            out.append(lines[index])
            index += 1
            continue
        index += 1
        block = []
        while index < len(lines) and lines[index].startswith("    "):
            block.append(lines[index].removeprefix("    "))
            index += 1
        out += ["```bash", *block, "```"]
    return out


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        if PAGE.read_text() != text:
            print("docs/cli.md differs from the code: run .venv/bin/python scripts/cli_docs.py")
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
