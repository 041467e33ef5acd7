"""The connection to PostgreSQL: connect with one clear line on failure, turn any database
error into one line naming the database, and a Database that survives outages by reconnecting
with backoff (the work it runs must be safe to repeat)."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions

from .config import database_location, redact, remember_secret
from .errors import CertificateError, ConfigError, DatabaseError
from .outages import Outage, report_every, timestamp

log = logging.getLogger(__name__)
T = TypeVar("T")

BASE_BACKOFF = 0.5  # seconds before the first reconnect, doubling up to MAX_BACKOFF
MAX_BACKOFF = 30.0
WAKE_EVERY = 0.25  # seconds: how soon a wait between reconnects notices `interrupt`


IAM_AUTH_ENV = "LOGINETL_DATABASE_IAM_AUTH"  # 1: sign in to RDS with an IAM token
# Below `require`, libpq may send the password (here the token) over a plain connection.
_WITHOUT_TLS = ("disable", "allow", "prefer")


def connect(database_url: str, timeout: int = 10):
    location = database_location(database_url)
    try:
        connection = psycopg2.connect(
            database_url,
            **iam_auth(database_url),
            connect_timeout=timeout,
            application_name="loginetl",
            # Notice a peer that vanished without closing (network cut) within ~30 s.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
    except psycopg2.OperationalError as error:
        tls = [line for line in str(error).splitlines() if _is_tls_problem(line)]
        if tls:  # of each address libpq tried, the one whose certificate did not verify
            raise CertificateError(
                f"cannot connect to database {location}: TLS: {_tls_reason(redact(tls[0]))}"
            ) from None
        raise DatabaseError(f"cannot connect to database {location}: {first_line(error)}") from None
    except psycopg2.ProgrammingError as error:
        raise ConfigError(f"invalid database URL for {location}: {first_line(error)}") from None
    return connection


def iam_auth(database_url: str) -> dict:
    """With LOGINETL_DATABASE_IAM_AUTH=1, what signs this connection in to RDS: a fresh IAM
    token as the password (botocore signs it locally; it is valid 15 minutes, so each new
    connection takes a new one), and TLS, without which RDS refuses a token. Else nothing."""
    if os.environ.get(IAM_AUTH_ENV, "").strip().lower() not in ("1", "true", "yes"):
        return {}
    try:
        fields = psycopg2.extensions.parse_dsn(database_url)
    except psycopg2.ProgrammingError as error:
        raise ConfigError(f"invalid database URL: {first_line(error)}") from None
    sslmode = fields.get("sslmode", "require")
    if sslmode in _WITHOUT_TLS:
        raise ConfigError(
            f"{IAM_AUTH_ENV}=1 sends an IAM token as the password: it needs TLS (sslmode "
            f"require, verify-ca or verify-full), not sslmode={sslmode}"
        )
    host, user = fields.get("host"), fields.get("user")
    if not host or not user:
        raise ConfigError(f"{IAM_AUTH_ENV}=1 needs the database URL's host and user to sign")
    region = _rds_region(host)
    token = _rds_client(region).generate_db_auth_token(
        DBHostname=host, Port=int(fields.get("port", 5432)), DBUsername=user, Region=region
    )
    remember_secret(token)
    return {"password": token, "sslmode": sslmode}


def _rds_region(host: str) -> str:
    """AWS_REGION, AWS_DEFAULT_REGION or the profile's region, else the one in an RDS host name
    (NAME.ID.REGION.rds.amazonaws.com)."""
    import boto3

    region = boto3.session.Session().region_name
    labels = host.split(".")
    if not region and len(labels) > 4 and labels[-3:-1] == ["rds", "amazonaws"]:
        region = labels[2]
    if not region:
        raise ConfigError(f"{IAM_AUTH_ENV}=1 needs a region: set AWS_REGION")
    return region


@functools.cache
def _rds_client(region: str):
    """One RDS client a region for the process: a token is signed locally, no request sent."""
    import boto3

    return boto3.session.Session().client("rds", region_name=region)


# libpq's words for a certificate that does not verify (wrong CA, wrong host name, expired),
# a root certificate file it cannot read, or a server without TLS when sslmode requires it.
_TLS_PROBLEMS = ("certificate", "does not support SSL", "SSL error: tlsv1 alert", "sslrootcert")


def _is_tls_problem(reason: str) -> bool:
    return any(words.lower() in reason.lower() for words in _TLS_PROBLEMS)


def _tls_reason(reason: str) -> str:
    """libpq's reason without its `connection to server at "h" (a), port p failed:` prefix (the
    line names the database already)."""
    return reason.strip().rpartition(" failed: ")[2] or reason.strip()


@contextmanager
def database_errors(connection, action: str) -> Iterator[None]:
    """One line naming the database for anything PostgreSQL or the network throws."""
    try:
        yield
    except psycopg2.Error as error:
        _rollback_quietly(connection)
        location = location_of(connection)
        raise DatabaseError(f"{action} on database {location}: {first_line(error)}") from None


def location_of(connection) -> str:
    info = connection.info
    return f"{info.host}:{info.port}/{info.dbname}"


def _rollback_quietly(connection) -> None:
    try:
        if not connection.closed:
            connection.rollback()
    except psycopg2.Error:
        pass


def first_line(error: Exception) -> str:
    return redact(
        str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    )


class Database:
    """A connection that survives outages: when PostgreSQL drops or refuses connections, `call`
    reconnects with exponential backoff and jitter and runs the work again, for up to
    `retry_for` seconds. Work must therefore be safe to repeat: ours is, as a batch whose
    COMMIT was lost in the outage finds its rows already there and counts them as duplicates.

    An outage is one warning as it begins, one line every outages.REPORT_EVERY seconds while
    it lasts (since when, until when it is waited for) and one warning as it ends.
    """

    def __init__(
        self,
        database_url: str,
        retry_for: float = 300.0,
        stop: threading.Event | None = None,
        on_outage: Callable[[], None] = lambda: None,
    ) -> None:
        self.on_outage = on_outage
        self.database_url = database_url
        self.location = database_location(database_url)
        self.retry_for = retry_for
        self.stop = stop or threading.Event()
        self.interrupted = threading.Event()  # `interrupt`: stop waiting, the run ends anyway
        self.report_every = report_every()
        self.connection = None
        self.outage: Outage | None = None  # the one going on, since its first failure

    def call(self, work: Callable[[Any], T], action: str = "database work") -> T:
        deadline = time.monotonic() + self.retry_for
        for attempt in itertools.count():
            try:
                if self.connection is None or self.connection.closed:
                    self.connection = connect(self.database_url)
                result = work(self.connection)
            except DatabaseError as error:
                if isinstance(error, CertificateError) or not _is_outage(self.connection):
                    raise
                self.close()
                self.on_outage()
                delay = min(MAX_BACKOFF, BASE_BACKOFF * 2**attempt) * random.uniform(0.5, 1.0)
                if time.monotonic() + delay > deadline:
                    raise DatabaseError(
                        f"database {self.location} unavailable for {self.retry_for:g} s "
                        f"(--retry-for), gave up on {action}: {error}"
                    ) from None
                self._outage(error, delay)
                self._wait(delay, deadline, error)
            else:
                self._outage_over()
                return result
        raise AssertionError("unreachable")

    def interrupt(self) -> None:
        """End a wait for the database now (from another thread): the run stops on another
        error, and the `call` waiting raises instead of trying again."""
        self.interrupted.set()

    def _wait(self, delay: float, deadline: float, error: DatabaseError) -> None:
        """Wait `delay` seconds before trying again, saying that the outage goes on whenever
        a line is due; raises if the run stops or `interrupt` is called meanwhile."""
        outage = self.outage
        assert outage is not None, "_outage began it"
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0:
            if self.stop.wait(min(left, outage.due_in(), WAKE_EVERY)) or self.interrupted.is_set():
                raise DatabaseError(
                    f"stopped while waiting for database {self.location}: {error}"
                ) from None
            if outage.due_in() == 0:
                self._still(outage, deadline, error)

    def _outage(self, error: DatabaseError, delay: float) -> None:
        """One warning when an outage starts; each retry after it only at debug level."""
        if self.outage is None:
            self.outage = Outage(f"database {self.location}", self.report_every)
            log.warning(
                "database %s unavailable (%s); retrying for up to %g s (--retry-for)",
                self.location,
                error,
                self.retry_for,
                extra={"event": "database_unavailable", "database": self.location},
            )
        log.debug(
            "database %s still unavailable (%s); retrying in %.1f s", self.location, error, delay
        )

    def _still(self, outage: Outage, deadline: float, error: DatabaseError) -> None:
        """While it lasts, one line an interval: since when, and how much longer it is waited
        for (until the --retry-for of the work waiting runs out)."""
        left = max(0.0, deadline - time.monotonic())
        until = timestamp(time.time() + left)
        outage.still(
            log,
            f"database {self.location} still unavailable since {outage.since} "
            f"({outage.lasted():.0f} s); retrying until {until} ({left:.0f} s left of "
            f"--retry-for {self.retry_for:g} s): {error}",
            "database_still_unavailable",
            database=self.location,
            until=until,
            seconds_left=round(left, 3),
            retry_for=self.retry_for,
        )

    def _outage_over(self) -> None:
        """One warning when the outage ends, with how long it lasted."""
        if self.outage is None:
            return
        seconds, self.outage = self.outage.lasted(), None
        log.warning(
            "database %s available again after %.1f s",
            self.location,
            seconds,
            extra={
                "event": "database_available",
                "database": self.location,
                "seconds": round(seconds, 3),
            },
        )

    def execute(self, sql: str, params: tuple, error: str, action: str) -> list[tuple]:
        """One statement in autocommit, retried through an outage as `call` retries work (so
        it must be safe to run twice); its rows, if it returns any. `error` begins the line a
        refusal becomes, `action` names the work in outage messages."""

        def work(connection) -> list[tuple]:
            connection.autocommit = True
            with database_errors(connection, error), connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []

        return self.call(work, action)

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except psycopg2.Error:
                pass
        self.connection = None


def _is_outage(connection) -> bool:
    """After a DatabaseError: was it the connection (retry) rather than the SQL (do not)?"""
    if connection is None or connection.closed:
        return True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        connection.rollback()
        return False
    except psycopg2.Error:
        return True
