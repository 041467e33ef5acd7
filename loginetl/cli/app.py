"""The `loginetl` Typer app and the options of `loginetl` itself, accepted before or after the
command (`loginetl --log-format json run` and `loginetl run --log-format json` are the same)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException  # typer vendors click (typer==0.29.2)

from .. import config
from ..closed_pipe import QuietOnClosedPipe
from ..version_option import VersionOption
from . import logs
from .common import option, reports_errors, stderr
from .logs import LogFormat, LogLevel

GLOBAL_EPILOG = (
    "The options of loginetl itself (--log-format, --log-level) may come before or after the "
    "command."
)


class GlobalOptionsGroup(QuietOnClosedPipe):
    """Moves the options of `loginetl` itself that follow the command name to before it, so
    they mean the same wherever they stand; and writes usage errors as JSON when logs are."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        # .env in the working directory, below the environment and flags in precedence; read
        # before any option, so the options of loginetl itself can come from it too.
        config.load_dotenv(Path.cwd() / ".env")
        return super().parse_args(ctx, hoist(args, self.global_options()))

    def global_options(self) -> dict[str, bool]:
        """--flag -> whether it takes a value, for the options main_options declares."""
        return {
            name: not getattr(param, "is_flag", False)
            for param in self.params
            if param.name in ("log_format", "log_level")
            for name in param.opts
        }

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        if not (standalone_mode and _json_logs_asked(args)):
            return super().main(
                args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        try:
            result = super().main(
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
        except ClickException as error:  # a usage error, as one JSON line
            entry = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds")}
            entry |= {"level": "error", "event": "usage_error", "message": error.format_message()}
            print(json.dumps(entry | {"exit_code": error.exit_code}), file=sys.stderr)
            sys.exit(error.exit_code)
        sys.exit(result if isinstance(result, int) else 0)


def hoist(args: list[str], options: dict[str, bool]) -> list[str]:
    """`args` with the global `options` found after the command name moved to before it.
    Everything after `--` is left alone."""
    position = 0
    while position < len(args) and args[position].startswith("-") and args[position] != "--":
        name, has_value = args[position].partition("=")[::2]
        position += 2 if options.get(name) and not has_value else 1
    if position >= len(args) or args[position] == "--":
        return args
    moved: list[str] = []
    kept: list[str] = []
    rest = args[position + 1 :]
    index = 0
    while index < len(rest):
        token = rest[index]
        if token == "--":
            kept += rest[index:]
            break
        name, _, value = token.partition("=")
        if name in options:
            take = 2 if options[name] and not value and "=" not in token else 1
            moved += rest[index : index + take]
            index += take
        else:
            kept.append(token)
            index += 1
    return args[:position] + moved + [args[position]] + kept


def _json_logs_asked(args: list[str]) -> bool:
    """--log-format json among `args` (before `--`), else in the environment or .env."""
    config.load_dotenv(Path.cwd() / ".env")
    for index, token in enumerate(args):
        if token == "--":
            break
        if token.split("=")[0] == "--log-format":
            value = token.partition("=")[2] or "".join(args[index + 1 : index + 2])
            return value == "json"
    return os.environ.get("LOGINETL_LOG_FORMAT", "") == "json"


app = typer.Typer(
    cls=GlobalOptionsGroup,
    help="Move login events from an SQS queue into PostgreSQL, masking ip and device_id.",
    epilog=GLOBAL_EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: it wraps at any width and cuts nothing
)


@app.callback()
def main_options(
    log_level: Annotated[
        LogLevel | None,
        option(
            "--log-level",
            "What to log on stderr (default: info with --log-format json and for run --follow, "
            "else warning).",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        LogFormat,
        option("--log-format", "text (rich on a terminal) or json (one object per line)."),
    ] = LogFormat.text,
    version: VersionOption = False,
) -> None:
    logs.configure(log_level, log_format, stderr)


def command(name: str):
    """Register a `loginetl` subcommand whose errors end as one line and an exit code."""

    def register(function):
        return app.command(name, epilog=GLOBAL_EPILOG)(reports_errors(function))

    return register
