"""loginetl: login events from SQS into PostgreSQL, with ip and device_id masked."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("loginetl")  # the installed package's metadata: one place to bump
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
