"""verify-masking: audit user_logins, check by check, for personal data stored unmasked or
masked in a way that can be undone.

Checks on the table alone (one SQL pass over every row, or a sample): masks are well formed,
no column holds something shaped like an IP address or a device id, the extra fields named in
LOGINETL_MASK_EXTRA are masked, and which key ids the rows were masked under. Checks against
raw messages (from a file, or peeked off the queue): each message found in the table carries
the masks the current key gives (its named extra fields' too), and no stored mask is an unkeyed
digest or the base64 of a raw value. The audit only reads: its transaction is read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import database, schema
from ..config import Settings
from ..masking import KeyRing
from ..results import plain
from .checks import (
    FAIL,
    Check,
    extra_check,
    key_id_check,
    key_match_check,
    mask_shape_check,
    pii_check,
    reversible_check,
    siv_check,
)
from .raw import RawLogin, RawMessage, peek_raw, raw_login, read_raw_file, unkeyed_forms
from .table import MASK_COLUMNS, audited_columns, rows_of, scan_table, scope, siv_scan

__all__ = [
    "AuditOptions",
    "AuditReport",
    "Check",
    "RawLogin",
    "RawMessage",
    "raw_login",
    "read_raw_file",
    "unkeyed_forms",
    "verify_masking",
]


@dataclass(frozen=True)
class AuditOptions:
    sample: int | None = None  # rows to check; None: every row
    from_queue: int | None = None  # raw messages to peek off the queue
    from_file: str | None = None  # JSON array or JSON lines of raw messages
    strict_key: bool = False  # rows under another key id fail rather than warn
    mask_extra: frozenset[str] = frozenset()  # LOGINETL_MASK_EXTRA: extra fields to be masked
    wait_time: int = 1


@dataclass
class AuditReport:
    location: str
    key_id: str
    rows: int  # rows the table checks looked at
    sample: str | None  # how they were sampled; None: every row
    raw_messages: dict[str, int]  # given, not loadable, compared
    checks: list[Check]
    max_receive_count: int | None = None  # when messages were peeked: each peek is a receive
    endpoint: str | None = None  # the SQS endpoint called, when messages were peeked

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.status == FAIL]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_dict(self) -> dict:
        return plain(
            self,
            drop=("location", "max_receive_count"),
            database=self.location,
            passed=not self.failed,
            failed_checks=[check.name for check in self.failed],
            checks=[check.as_dict() for check in self.checks],
            exit_code=self.exit_code,
        )


def verify_masking(settings: Settings, ring: KeyRing, options: AuditOptions) -> AuditReport:
    raw: list[RawMessage] = []
    if options.from_file:
        raw += read_raw_file(options.from_file)
    max_receive_count = endpoint = None
    if options.from_queue:
        peeked, max_receive_count, endpoint = peek_raw(
            settings, options.from_queue, options.wait_time
        )
        raw += peeked
    mask_extra = options.mask_extra
    logins = [login for message in raw if (login := raw_login(message, mask_extra)) is not None]

    connection = database.connect(settings.database_url)
    try:
        connection.set_session(readonly=True)
        with database.database_errors(connection, f"cannot audit {schema.TABLE}"):
            columns = audited_columns(connection, settings.database_location)
            with connection.cursor() as cursor:
                where, sample = scope(cursor, options.sample)
                scan = scan_table(cursor, columns, where, ring, mask_extra)
                stored = rows_of(cursor, columns, logins, mask_extra) if logins else []
            extra = mask_extra if schema.EXTRA in columns else frozenset()
            siv = siv_scan(connection, where, ring, extra)
            connection.rollback()
    finally:
        connection.close()

    checks = [
        *(mask_shape_check(column, scan) for column in MASK_COLUMNS),
        pii_check(scan),
        extra_check(scan, mask_extra),
        key_id_check(scan, columns, ring, options.strict_key),
        siv_check(siv),
        key_match_check(logins, stored, ring, bool(raw)),
        reversible_check(logins, stored, bool(raw)),
    ]
    return AuditReport(
        location=settings.database_location,
        key_id=ring.primary.key_id,
        rows=scan["rows"],
        sample=sample,
        raw_messages={
            "given": len(raw),
            "not_loadable": len(raw) - len(logins),
            "compared": len(logins),
        },
        checks=checks,
        max_receive_count=max_receive_count,
        endpoint=endpoint,
    )
