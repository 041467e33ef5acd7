"""The checks of verify-masking, each a pure function of what the table scan and the raw
messages gave: a status, how many were looked at and failed, and a one-line detail that never
holds a raw value."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..masking import MASK_EXTRA_ENV, KeyRing
from ..results import plain
from .raw import RawLogin, unkeyed_forms
from .table import PII_PATTERNS, StoredRow

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, fail, warn (reported, not a failure) or skip (could not be checked)
    checked: int  # rows (or raw messages) looked at
    failing: int  # of those, how many break the rule
    detail: str  # one line; never a raw value
    breakdown: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return plain(self, passed=self.status != FAIL)


def mask_shape_check(column: str, scan: dict) -> Check:
    rows, bad = scan["rows"], scan[f"bad_shape {column}"]
    shapes = "64 lowercase hex characters (hmac) or siv: and base64 (siv)"
    detail = f"{bad} of {rows} rows are not {shapes}" if bad else f"all {rows} rows are {shapes}"
    return Check(f"{column} well-formed", FAIL if bad else PASS, rows, bad, detail)


def pii_check(scan: dict) -> Check:
    rows, bad = scan["rows"], scan["pii rows"]
    breakdown: dict[str, dict[str, int]] = {}
    for column in scan["text columns"]:
        for kind in PII_PATTERNS:
            found = scan[f"pii {column} {kind}"]
            if found:
                breakdown.setdefault(column, {})[kind] = found
    kinds = ", ".join(PII_PATTERNS)
    if bad:
        where = "; ".join(
            f"{column}: " + ", ".join(f"{kind} ×{n}" for kind, n in found.items())
            for column, found in breakdown.items()
        )
        detail = f"{bad} of {rows} rows hold what looks like raw personal data ({where})"
    else:
        detail = f"no {kinds} in {len(scan['text columns'])} text columns of {rows} rows"
    return Check("no raw PII in any column", FAIL if bad else PASS, rows, bad, detail, breakdown)


def extra_check(scan: dict, mask_extra: frozenset[str]) -> Check:
    """The extra fields LOGINETL_MASK_EXTRA names are stored masked wherever a row holds them
    (a null hides nothing). With none named, a table that keeps extra fields is a warning: what
    they hold is stored as sent, so the operator should say which of them are personal."""
    name = "extra fields masked"
    if "extra rows" not in scan:
        return Check(name, SKIP, 0, 0, "the table has no extra column (run --keep-extra fills it)")
    rows = scan["extra rows"]
    if not rows:
        return Check(name, PASS, 0, 0, f"none of {scan['rows']} rows keeps extra fields")
    if not mask_extra:
        names = scan["extra names"]
        listed = _tally(names["fields"])
        more = f" and {names['other_names']} more names" if names["other_names"] else ""
        detail = (
            f"{rows} rows keep extra fields stored as sent ({listed}{more}): {MASK_EXTRA_ENV} "
            "names none to mask; name the personal ones in it"
        )
        return Check(name, WARN, rows, 0, detail, names)
    bad = scan["unmasked extra rows"]
    breakdown = {
        field: scan[f"unmasked extra {field}"]
        for field in sorted(mask_extra)
        if scan[f"unmasked extra {field}"]
    }
    listed = ", ".join(sorted(mask_extra))
    if bad:
        detail = (
            f"{bad} of {rows} rows keeping extra fields hold a named one unmasked "
            f"({_tally(breakdown)})"
        )
    else:
        detail = f"every named field ({listed}) held by {rows} rows keeping extra fields is masked"
    return Check(name, FAIL if bad else PASS, rows, bad, detail, breakdown)


def key_id_check(scan: dict, columns: dict[str, str], ring: KeyRing, strict: bool) -> Check:
    name = "rows under the current key id"
    key_id = ring.primary.key_id
    if "mask_key_id" not in columns:
        return Check(name, SKIP, 0, 0, "the table has no mask_key_id column (run init-db)")
    rows, other, unknown = scan["rows"], scan["other key rows"], scan["unknown key rows"]
    if not other:
        detail = f"all {rows} rows masked under key id {key_id}"
        return Check(name, PASS, rows, 0, detail, {"key_ids": scan["key ids"]})
    example, ids = scan["other key example"], scan["other key ids"]
    detail = (
        f"{other} of {rows} rows masked under {ids} other key id{'' if ids == 1 else 's'} "
        f"(e.g. {example or 'none recorded'}), not the current {key_id}: "
        f"{other - unknown} under retired keys of the ring (rekey moves siv ones), {unknown} "
        "under keys not in the ring, whose masks no key here can match"
        + ("" if strict else " (fails with --strict-key)")
    )
    breakdown = {
        "other_key_ids": ids,
        "retired": other - unknown,
        "unknown": unknown,
        "key_ids": scan["key ids"],
    }
    return Check(name, FAIL if strict else WARN, rows, other, detail, breakdown)


def siv_check(siv: dict) -> Check:
    """Recoverable masks: each decrypts, under the key its row names, to a well-formed value
    (ip, device_id, and the extra fields LOGINETL_MASK_EXTRA names)."""
    name = "siv masks decrypt under a known key"
    rows, unknown, bad = siv["rows"], siv["unknown_key"], siv["undecryptable"]
    if not rows:
        return Check(name, PASS, 0, 0, "no row holds an siv mask (hmac rows only): none to decrypt")
    detail = (
        f"{rows - unknown - bad} of {rows} siv rows decrypt under their key; {bad} do not "
        f"decrypt (to an ip, a device_id and the named extra fields); {unknown} under keys "
        "not in the ring"
    )
    status = FAIL if bad else WARN if unknown else PASS
    return Check(name, status, rows, bad + unknown, detail, dict(siv))


def key_match_check(
    logins: list[RawLogin], stored: list[StoredRow], ring: KeyRing, given: bool
) -> Check:
    """Each raw message found in the table: are its stored masks the ones the current key gives?

    Found by message id when known (from the queue, or an SQS-shaped file), where the row is
    that message: different masks under the current key id fail. Otherwise found by user_id,
    where the user's rows may be other logins: one row with both masks is a match, none is not
    evidence by itself. But if not one message found matches, the key is wrong, or the masks
    were not made with it."""
    name = "masks match the current key"
    if not given:
        return Check(name, SKIP, 0, 0, "no raw messages to compare (--from-file, --from-queue)")
    by_id = {row.sqs_message_id: row for row in stored if row.sqs_message_id}
    by_user: dict[str, list[StoredRow]] = {}
    for row in stored:
        by_user.setdefault(row.user_id, []).append(row)
    counts = {"match": 0, "other_key": 0, "mismatch": 0, "unmatched_by_user": 0, "not_loaded": 0}
    fields: dict[str, int] = {}  # named extra fields of the mismatched rows, not their masks
    for raw in logins:
        same_id = by_id.get(raw.message_id) if raw.message_id is not None else None
        exact = same_id is not None
        candidates = [same_id] if same_id is not None else by_user.get(raw.login.user_id, [])
        if not candidates:
            counts["not_loaded"] += 1
        elif any(_masked_from(ring, raw, row) for row in candidates):
            counts["match"] += 1
        elif all(ring.get(row.mask_key_id) is None for row in candidates):
            counts["other_key"] += 1
        elif exact:
            counts["mismatch"] += 1
            for field_name in _extra_not_masked_from(ring, raw, candidates[0]):
                fields[field_name] = fields.get(field_name, 0) + 1
        else:
            counts["unmatched_by_user"] += 1
    found = len(logins) - counts["not_loaded"]
    summary = (
        f"{counts['match']} of {found} found match; {counts['other_key']} under another key id; "
        f"{counts['unmatched_by_user']} found by user_id only, without equal masks; "
        f"{counts['not_loaded']} not in the table"
    )
    if found == 0:
        return Check(
            name,
            SKIP,
            len(logins),
            0,
            f"none of the {len(logins)} valid raw messages is in the table",
            counts,
        )
    if counts["mismatch"]:
        detail = (
            f"{counts['mismatch']} rows claim the current key id {ring.primary.key_id} (or a "
            "retired one of the ring) but hold other masks than it gives (non-deterministic or "
            f"mislabelled masking{_named(fields)}); {summary}"
        )
        breakdown = counts | ({"mismatched_extra": fields} if fields else {})
        return Check(name, FAIL, found, counts["mismatch"], detail, breakdown)
    if counts["match"] == 0:
        detail = (
            f"wrong key: none of the {found} raw messages found in the table has the masks the "
            f"current key (id {ring.primary.key_id}) gives; {summary}"
        )
        return Check(name, FAIL, found, found, detail, counts)
    return Check(name, PASS, found, 0, summary, counts)


def _masked_from(ring: KeyRing, raw: RawLogin, row: StoredRow) -> bool:
    """Does the row hold the masks of `raw` under the key it names, in either mode: ip,
    device_id and each named extra field the row keeps, all under that one key and mode?"""
    key = ring.get(row.mask_key_id)
    if key is None:
        return False
    ip, device_id = raw.login.ip, raw.login.device_id
    kept = [name for name in raw.extra if name in row.extra]
    return any(
        (row.masked_ip, row.masked_device_id) == (mask(ip), mask(device_id))
        and all(row.extra[name] == mask(raw.extra[name]) for name in kept)
        for mask in (key.hmac_mask, key.siv_mask)
    )


def _extra_not_masked_from(ring: KeyRing, raw: RawLogin, row: StoredRow) -> list[str]:
    """The named extra fields the row keeps that hold neither mask of the raw value under the
    key the row names (their names: what they hold may be the raw value itself)."""
    key = ring.get(row.mask_key_id)
    if key is None:
        return []
    return [
        name
        for name, text in raw.extra.items()
        if name in row.extra and row.extra[name] not in key.masks(text)
    ]


def _named(fields: dict[str, int]) -> str:
    return f"; extra fields unlike the key's masks: {_tally(fields)}" if fields else ""


def _tally(counts: dict[str, int]) -> str:
    """`name ×count, ...`: where something was found, never what."""
    return ", ".join(f"{name} ×{count}" for name, count in counts.items())


def reversible_check(logins: list[RawLogin], stored: list[StoredRow], given: bool) -> Check:
    """No stored mask is an unkeyed digest (MD5, SHA-1, SHA-256, SHA-512: hex or base64) or the
    base64 of a raw value: anyone could compute those from the value, no key needed."""
    name = "no unkeyed hash or base64 of raw values"
    if not given:
        return Check(name, SKIP, 0, 0, "no raw messages to compare (--from-file, --from-queue)")
    forms: dict[str, str] = {}
    for raw in logins:
        for field_name, values in raw.values.items():
            for value in values:
                forms |= unkeyed_forms(value, field_name)
    breakdown: dict[str, int] = {}
    bad = 0
    for row in stored:
        held = [("masked_ip", row.masked_ip), ("masked_device_id", row.masked_device_id)]
        held += [(f"extra {name}", value) for name, value in row.extra.items()]
        found = [f"{column} = {forms[value]}" for column, value in held if value in forms]
        bad += bool(found)
        for what in found:
            breakdown[what] = breakdown.get(what, 0) + 1
    if bad:
        kinds = ", ".join(f"{what} ×{n}" for what, n in breakdown.items())
        detail = (
            f"{bad} of {len(stored)} rows of the raw messages' users masked reversibly: {kinds}"
        )
    else:
        detail = (
            f"none of {len(stored)} rows of the raw messages' users holds an unkeyed hash or base64"
        )
    return Check(name, FAIL if bad else PASS, len(stored), bad, detail, breakdown)
