"""loginetl: login events from SQS into PostgreSQL, with ip and device_id masked."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("loginetl")  # the installed package's metadata: one place to bump
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"


def version_callback(shown: bool) -> None:
    """An eager `--version` option's callback, for both console scripts: print and exit."""
    if shown:
        import typer

        print(__version__)
        raise typer.Exit()
