"""`loginetl verify-masking`: audit the table for unmasked personal data."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import audit, config, transform
from ..config import Settings
from ..masking import key_ring_from_env, mask_extra_from_env
from . import render
from .app import command
from .common import (
    DatabaseUrl,
    EndpointUrl,
    JsonOutput,
    QueueUrl,
    WaitTime,
    finish,
    note_receive_count,
    option,
    show,
    sources,
)


@command("verify-masking")
def verify_masking(
    ctx: typer.Context,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    sample: Annotated[
        int | None,
        option("--sample", "Check about N rows drawn at random (default: every row).", min=1),
    ] = None,
    from_file: Annotated[
        str | None,
        option(
            "--from-file",
            "Raw messages (JSON array or JSON lines) to compare the stored masks against.",
        ),
    ] = None,
    from_queue: Annotated[
        int | None,
        option(
            "--from-queue",
            "Peek N raw messages off --queue-url, without consuming them, to compare against.",
            min=1,
            max=1000,
        ),
    ] = None,
    strict_key: Annotated[
        bool,
        option("--strict-key", "Fail when rows were masked under another key id."),
    ] = False,
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    endpoint_url: EndpointUrl = None,
    wait_time: WaitTime = 1,
    json: JsonOutput = False,
):
    """Audit user_logins for unmasked personal data.

    Is every ip and device_id masked, and masked with the current key? And each extra
    field (kept by run --keep-extra) that LOGINETL_MASK_EXTRA names, e.g. email,phone? Siv
    masks must decrypt under a key of the ring (LOGINETL_OLD_MASK_KEYS holds the retired
    ones). Exit 0 when every check passes, 1 when one fails. Needs LOGINETL_MASK_KEY.

    Examples:

    \b
        loginetl verify-masking
        loginetl verify-masking --from-file raw_messages.json --sample 100000
        loginetl verify-masking --from-queue 50 --strict-key --json
    """
    settings = Settings(
        queue_url=queue_url,
        endpoint_url=endpoint_url,
        database_url=database_url,
        sources=sources(ctx),
    )
    ring = key_ring_from_env()
    options = audit.AuditOptions(
        sample=sample,
        from_queue=from_queue,
        from_file=from_file,
        strict_key=strict_key,
        mask_extra=mask_extra_from_env(transform.KNOWN_FIELDS),
        wait_time=wait_time,
    )
    report = audit.verify_masking(settings, ring, options)
    note_receive_count(report.max_receive_count)
    show(json, report.as_dict(), render.audit_table(report))
    failed = [check.name for check in report.failed]
    summary = f"{len(failed)} of {len(report.checks)} checks failed: {', '.join(failed)}"
    finish(summary if failed else None, report.exit_code)
