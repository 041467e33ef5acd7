"""The `loginetl` command: parse options, call one service, render what it returns.

Settings come from flags, then the environment, then `.env` in the working directory (loaded
without overriding the environment), then the defaults. Every service error becomes one line on
stderr and an exit code: 0 done, 1 stopped on an error, 2 bad usage or configuration, 3 a
stream run that left shards to another process (errors.EXIT_INCOMPLETE).

One module per command group: table (init-db), loading (run), inspecting (peek), dlq
(replay-dlq), privacy (verify-masking), keys (unmask, rekey), people (lookup, erase); common
holds the shared options and the one way to end.
"""

# Each module registers its commands on `app`; imported in the order --help lists them.
from . import table, loading, inspecting, dlq, privacy, keys, people  # noqa: F401, I001
from .app import app


def main() -> None:
    app(prog_name="loginetl")
