"""verify-masking's rules for the extra fields LOGINETL_MASK_EXTRA names, as pure functions of
a scan's counts, raw messages and stored rows: no database, no queue."""

from __future__ import annotations

import hashlib
import json

from loginetl.audit import RawMessage, raw_login
from loginetl.audit.checks import extra_check, key_match_check, reversible_check
from loginetl.audit.table import StoredRow
from loginetl.masking import KeyRing, MaskKey
from loginetl.privacy.recovery import decrypted_extra

KEY = MaskKey("a-unit-test-mask-key-0123456789")
RING = KeyRing(KEY)
LOGIN = {
    "user_id": "u1",
    "device_type": "ios",
    "ip": "10.0.0.1",
    "device_id": "d-1",
    "app_version": "1.0",
}
NAMED = frozenset({"email", "phone"})


def raw(extra: dict, body: str | None = None):
    found = raw_login(RawMessage(body or json.dumps(LOGIN | extra), "m1"), NAMED)
    assert found is not None
    return found


def stored(extra: dict[str, str], key: MaskKey = KEY, mask=None) -> StoredRow:
    mask = mask or key.hmac_mask
    return StoredRow("m1", "u1", mask("10.0.0.1"), mask("d-1"), key.key_id, extra)


def test_raw_login_keeps_the_text_run_masks_of_each_named_field():
    body = json.dumps(LOGIN | {"email": "a@b.c", "phone": 0, "plan": "pro"})
    found = raw({}, body.replace('"phone": 0', '"phone": 44.10'))
    assert found.extra == {"email": "a@b.c", "phone": "44.10"}  # a number as sent
    assert found.values["email"] == {"a@b.c"} and "plan" not in found.values
    assert raw({"email": None}).extra == {}  # null: nothing masked, nothing to compare
    # What run --keep-extra refuses to mask is no loadable login.
    assert raw_login(RawMessage(json.dumps(LOGIN | {"email": "\ud800"})), NAMED) is None


def test_the_extra_check_skips_passes_warns_and_fails():
    assert extra_check({"rows": 3}, NAMED).status == "skip"  # no extra column
    assert extra_check({"rows": 3, "extra rows": 0}, frozenset()).status == "pass"
    names = {"fields": {"email": 2, "plan": 1}, "other_names": 4}
    warned = extra_check({"rows": 3, "extra rows": 2, "extra names": names}, frozenset())
    assert (warned.status, warned.checked, warned.breakdown) == ("warn", 2, names)
    assert "email ×2, plan ×1 and 4 more names" in warned.detail
    scan = {
        "rows": 5,
        "extra rows": 4,
        "unmasked extra rows": 2,
        "unmasked extra email": 2,
        "unmasked extra phone": 0,
    }
    failed = extra_check(scan, NAMED)
    assert (failed.status, failed.checked, failed.failing) == ("fail", 4, 2)
    assert failed.breakdown == {"email": 2} and "email ×2" in failed.detail
    clean = extra_check(scan | {"unmasked extra rows": 0, "unmasked extra email": 0}, NAMED)
    assert clean.status == "pass" and clean.failing == 0


def test_a_row_matches_only_when_its_named_fields_carry_the_keys_masks():
    login = raw({"email": "a@b.c", "phone": 44})
    good = {"email": KEY.hmac_mask("a@b.c"), "phone": KEY.hmac_mask("44")}
    assert key_match_check([login], [stored(good)], RING, True).status == "pass"
    siv = {"email": KEY.siv_mask("a@b.c")}  # one mode for all the row's masks
    assert key_match_check([login], [stored(siv, mask=KEY.siv_mask)], RING, True).status == "pass"
    assert key_match_check([login], [stored(siv)], RING, True).status == "fail"
    assert key_match_check([login], [stored({})], RING, True).status == "pass"  # not kept

    digest = hashlib.sha256(b"a@b.c").hexdigest()
    for held in ("a@b.c", digest, MaskKey("another-key-0123456789").hmac_mask("a@b.c")):
        check = key_match_check([login], [stored(good | {"email": held})], RING, True)
        assert (check.status, check.breakdown["mismatched_extra"]) == ("fail", {"email": 1})
        assert "email ×1" in check.detail and "a@b.c" not in check.detail


def test_a_raw_or_unkeyed_named_field_is_reversible_by_field_name():
    login = raw({"email": "a@b.c"})
    digest = hashlib.sha256(b"a@b.c").hexdigest()
    check = reversible_check([login], [stored({"email": digest})], True)
    assert (check.status, check.breakdown) == ("fail", {"extra email = sha256(email)": 1})
    check = reversible_check([login], [stored({"email": "a@b.c"})], True)
    assert check.breakdown == {"extra email = raw email": 1} and "a@b.c" not in check.detail
    good = stored({"email": KEY.hmac_mask("a@b.c")})
    assert reversible_check([login], [good], True).status == "pass"


def test_only_siv_masks_under_the_key_are_decrypted():
    other = MaskKey("another-key-0123456789")
    candidates = {
        "email": KEY.siv_mask("a@b.c"),
        "note": "siv:" + "A" * 40,
        "old": other.siv_mask("x"),
    }
    assert decrypted_extra(KEY, candidates) == {"email": "a@b.c"}
    assert decrypted_extra(KEY, None) == {}
