"""The `loginetl` command: parse options, call one service, render what it returns.

Settings come from flags, then the environment, then `.env` in the working directory (loaded
without overriding the environment), then the defaults. Every service error becomes one line on
stderr and an exit code: 0 done, 1 stopped on an error, 2 bad usage or configuration, 3 a
stream run that left shards to another process (errors.EXIT_INCOMPLETE).

One module per command, named after it (`loginetl replay-dlq` is replay_dlq.py); app holds the
Typer app and the options of loginetl itself, common the options shared by commands and the one
way to end, render the tables, logs the log lines.
"""

# Each module registers its command on `app`; imported in the order --help lists them.
from . import init_db, prune, run, peek, status, replay_dlq, verify_masking  # noqa: F401, I001
from . import unmask, rekey, lookup, erase  # noqa: F401
from .app import app


def main() -> None:
    app(prog_name="loginetl")
