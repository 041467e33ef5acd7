"""Errors the services raise, each carrying a one-line message for the operator and an exit code.

The CLI turns any of these into that line on stderr and the exit code; nothing else in the
package prints.
"""

EXIT_OK = 0
EXIT_FAILED = 1  # had to stop on an error (queue or database unreachable, ...)
EXIT_USAGE = 2  # bad usage or configuration
# Ended without error but without doing all it was asked: a one-shot stream run that left
# shards to another process still holding them. Run again later (or after that process ends).
EXIT_INCOMPLETE = 3
# The reader of the output closed it early (`| head`): 128 + SIGPIPE, as a shell reports a Unix
# tool that SIGPIPE ended, so a pipeline with `set -o pipefail` tells it from success.
EXIT_CLOSED_PIPE = 141


class LoginetlError(Exception):
    exit_code = EXIT_FAILED


class ClaimLost(LoginetlError):
    """This process no longer holds the claim (a shard's lease, a partition's claim) its
    records of a batch were read under: they are not its to commit, and the batch is re-cut
    without them (pipeline/committing.py). `shard_id` names what they have in common."""

    def __init__(self, message: str, shard_id: str) -> None:
        super().__init__(message)
        self.shard_id = shard_id


class ConfigError(LoginetlError):
    """A missing or invalid setting: the operator must fix the configuration."""

    exit_code = EXIT_USAGE


class QueueError(LoginetlError):
    """SQS refused or could not be reached."""


class DatabaseError(LoginetlError):
    """PostgreSQL refused or could not be reached."""


class CertificateError(DatabaseError):
    """The database server's TLS certificate does not verify (or TLS cannot be set up): not an
    outage, so never retried."""
