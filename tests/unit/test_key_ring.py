"""The privacy code's behaviour pinned, with no server: each mode's mask shape and width, siv
round trips under every key of the ring, which key a mask belongs to, each error of a bad key,
mode or ring (one line, no secret in it), the retired keys' order, and reading keys from the
environment. Masks are checked against the primitives computed here independently (HMAC-SHA256,
HKDF then AES-SIV), so a mode that silently turned into the other is caught."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from loginetl import config
from loginetl.errors import ConfigError
from loginetl.masking import (
    HMAC,
    PRIMARY,
    RETIRED,
    SIV,
    UNKNOWN,
    CannotUnmask,
    KeyRing,
    MaskKey,
    key_ring_from_env,
    mask_key_from_env,
    mask_mode_from_env,
    mode_of,
    old_mask_keys_from_env,
)

A, B, C = "a-secret-key-0123456789", "b-secret-key-0123456789", "c-secret-key-0123456789"
TOO_SHORT = (
    "is too short: use at least 16 characters (for example the output of "
    "`python -c 'import secrets; print(secrets.token_hex(32))'`)"
)


def expected_hmac(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def expected_siv(secret: str, value: str) -> str:
    key = HKDF(hashes.SHA256(), 64, salt=None, info=b"loginetl aes-siv").derive(secret.encode())
    sealed = AESSIV(key).encrypt(value.encode(), None)
    return "siv:" + base64.urlsafe_b64encode(sealed).decode().rstrip("=")


@pytest.mark.parametrize("value", ["", "1", "10.0.0.1", "2001:db8::1", "device-ÿ-€", "x" * 250])
def test_each_mode_masks_as_its_primitive_does(value):
    hmac_key, siv_key = MaskKey(A), MaskKey(A, SIV)
    assert hmac_key.mode == HMAC and siv_key.mode == SIV
    assert hmac_key.mask(value) == hmac_key.hmac_mask(value) == expected_hmac(A, value)
    assert re.fullmatch(r"[0-9a-f]{64}", hmac_key.mask(value))
    assert siv_key.mask(value) == siv_key.siv_mask(value) == expected_siv(A, value)
    width = len(value.encode()) + 16  # the value and the 16-byte synthetic IV
    assert len(siv_key.mask(value)) == 4 + -(-width * 4 // 3)  # base64 without its padding
    assert "=" not in siv_key.mask(value)
    assert (
        hmac_key.masks(value)
        == siv_key.masks(value)
        == (expected_hmac(A, value), expected_siv(A, value))
    )


def test_the_key_id_names_the_key_in_either_mode_and_reveals_nothing():
    key_id = hmac.new(A.encode(), b"loginetl key id", hashlib.sha256).hexdigest()[:16]
    assert MaskKey(A).key_id == MaskKey(A, SIV).key_id == key_id
    assert MaskKey(B).key_id != key_id
    assert repr(MaskKey(A)) == f"MaskKey(key_id={key_id!r})" and A not in repr(MaskKey(A))


def test_a_key_is_remembered_as_a_secret_to_hide():
    config._secrets.clear()
    MaskKey(C)
    assert config.redact(f"key {C} here") == "key *** here"


@pytest.mark.parametrize("value", ["", "a", "ab", "abc", "abcd", "203.0.113.7", "é" * 40])
def test_siv_masks_round_trip_under_the_key_that_made_them_only(value):
    a, b = MaskKey(A, SIV), MaskKey(B, SIV)
    assert a.unmask(a.mask(value)) == value
    assert MaskKey(A).unmask(a.siv_mask(value)) == value  # the mode of new masks does not matter
    with pytest.raises(CannotUnmask, match=r"^does not decrypt under this key$"):
        b.unmask(a.mask(value))


@pytest.mark.parametrize(
    "mask, reason",
    [
        (MaskKey(A).mask("10.0.0.1"), "one-way (hmac) mask"),
        ("", "one-way (hmac) mask"),
        ("SIV:abc", "one-way (hmac) mask"),
        ("siv:", "does not decrypt under this key"),
        ("siv:!!!not-base64", "does not decrypt under this key"),
        ("siv:" + "A" * 43, "does not decrypt under this key"),
    ],
)
def test_what_cannot_be_unmasked_says_why(mask, reason):
    with pytest.raises(CannotUnmask) as refused:
        MaskKey(A, SIV).unmask(mask)
    assert str(refused.value) == reason


def test_mode_of_reads_the_prefix():
    assert [mode_of(m) for m in (None, "", "ab" * 32, "siv:x", "SIV:x", "xsiv:")] == [
        HMAC,
        HMAC,
        HMAC,
        SIV,
        HMAC,
        HMAC,
    ]


@pytest.mark.parametrize("length", [15, 16])
def test_a_key_shorter_than_16_characters_is_refused_in_one_line(length):
    secret = "k" * length
    if length >= 16:
        assert MaskKey(secret).key_id
        return
    with pytest.raises(ConfigError) as refused:
        MaskKey(secret, env="LOGINETL_OLD_MASK_KEYS")
    assert str(refused.value) == f"LOGINETL_OLD_MASK_KEYS {TOO_SHORT}"
    with pytest.raises(ConfigError, match=f"^LOGINETL_MASK_KEY {re.escape(TOO_SHORT)}$"):
        MaskKey(secret)


def test_an_unknown_mode_is_refused_without_the_secret():
    with pytest.raises(ConfigError) as refused:
        MaskKey(A, "aes")
    assert str(refused.value) == "LOGINETL_MASK_MODE must be one of hmac, siv"


def test_the_ring_reads_under_every_key_and_names_each_keys_status():
    a, b, c = MaskKey(A), MaskKey(B, SIV), MaskKey(C)
    ring = KeyRing(a, (b, c))
    assert ring.keys == (a, b, c)
    assert ring.get(b.key_id) is b and ring.get(a.key_id) is a
    assert ring.get("0" * 16) is None and ring.get(None) is None
    assert [ring.status_of(k) for k in (a.key_id, b.key_id, c.key_id, "f" * 16, None)] == [
        PRIMARY,
        RETIRED,
        RETIRED,
        UNKNOWN,
        UNKNOWN,
    ]
    assert ring.retired_ids() == [b.key_id, c.key_id]
    assert ring.masks("v") == [*a.masks("v"), *b.masks("v"), *c.masks("v")]
    assert KeyRing(a).retired_ids() == [] and KeyRing(a).keys == (a,)
    for key in ring.keys:  # a siv mask made under any key of the ring reads back under it
        assert ring.get(key.key_id).unmask(key.siv_mask("203.0.113.7")) == "203.0.113.7"


def test_the_mode_comes_from_the_environment():
    assert mask_mode_from_env({}) == HMAC
    assert mask_mode_from_env({"LOGINETL_MASK_MODE": ""}) == HMAC
    assert mask_mode_from_env({"LOGINETL_MASK_MODE": " SIV "}) == SIV
    with pytest.raises(ConfigError) as refused:
        mask_mode_from_env({"LOGINETL_MASK_MODE": "Aes"})
    assert str(refused.value) == "LOGINETL_MASK_MODE must be one of hmac, siv, not 'aes'"


def test_the_primary_key_comes_from_the_environment_or_a_file(tmp_path):
    with pytest.raises(ConfigError) as refused:
        mask_key_from_env({})
    assert str(refused.value) == (
        "LOGINETL_MASK_KEY is not set: the mask key is required to mask ip and device_id "
        "(set it in the environment or in .env)"
    )
    key = mask_key_from_env({"LOGINETL_MASK_KEY": A, "LOGINETL_MASK_MODE": "siv"})
    assert (key.key_id, key.mode) == (MaskKey(A).key_id, SIV)
    (tmp_path / "key").write_text(B + "\n")
    from_file = mask_key_from_env({"LOGINETL_MASK_KEY_FILE": str(tmp_path / "key")})
    assert (from_file.key_id, from_file.mode) == (MaskKey(B).key_id, HMAC)


def test_retired_keys_are_read_in_order_from_commas_or_lines(tmp_path):
    ids = [MaskKey(s).key_id for s in (B, C)]
    assert old_mask_keys_from_env({}) == []
    assert old_mask_keys_from_env({"LOGINETL_OLD_MASK_KEYS": ""}) == []
    listed = old_mask_keys_from_env({"LOGINETL_OLD_MASK_KEYS": f" {B} ,, {C} ,"})
    assert [key.key_id for key in listed] == ids
    (tmp_path / "old").write_text(f"{B}\n\n{C}\n")
    lines = old_mask_keys_from_env({"LOGINETL_OLD_MASK_KEYS_FILE": str(tmp_path / "old")})
    assert [key.key_id for key in lines] == ids
    assert all(key.mode == HMAC for key in lines)
    with pytest.raises(ConfigError, match=f"^LOGINETL_OLD_MASK_KEYS {re.escape(TOO_SHORT)}$"):
        old_mask_keys_from_env({"LOGINETL_OLD_MASK_KEYS": f"{B},short"})


def test_the_ring_from_the_environment_drops_the_primary_and_repeats_keeping_order():
    environ = {
        "LOGINETL_MASK_KEY": A,
        "LOGINETL_MASK_MODE": "siv",
        "LOGINETL_OLD_MASK_KEYS": f"{C},{A},{B},{C}",
    }
    ring = key_ring_from_env(environ)
    assert (ring.primary.key_id, ring.primary.mode) == (MaskKey(A).key_id, SIV)
    assert ring.retired_ids() == [MaskKey(C).key_id, MaskKey(B).key_id]
    assert key_ring_from_env({"LOGINETL_MASK_KEY": A}).retired == ()


def test_siv_masks_of_every_length_round_trip_and_keep_every_base64_character():
    key = MaskKey(A, SIV)
    values = [f"v{i}" * (i % 23) for i in range(300)]
    masks = [key.mask(value) for value in values]
    assert [key.unmask(mask) for mask in masks] == values  # every padding the base64 needs
    assert {mask[-1] for mask in masks} >= {"X", "A"}  # none stripped from the end
    assert masks == [expected_siv(A, value) for value in values]


def test_a_device_id_is_refused_only_past_what_a_siv_mask_column_holds():
    from datetime import datetime

    from loginetl import transform

    key = MaskKey(A, SIV)
    login = transform.validate_document(
        {
            "user_id": "u",
            "device_type": "ios",
            "ip": "10.0.0.1",
            "device_id": "d" * 173,
            "app_version": "1",
        }
    )
    row = transform.mask_login(login, key, "id", datetime(2026, 1, 1))
    assert len(row.masked_device_id) == transform.MASK_WIDTH  # exactly fits varchar(256)
    login.device_id = "d" * 174
    with pytest.raises(transform.InvalidMessage) as refused:
        transform.mask_login(login, key, "id", datetime(2026, 1, 1))
    assert refused.value.reason == (
        "schema: field 'device_id' is too long to store encrypted (siv) in varchar(256): "
        "at most 173 bytes"
    )


def test_mask_extra_names_come_from_the_environment_and_never_a_known_field():
    from loginetl.masking import mask_extra_from_env
    from loginetl.transform import KNOWN_FIELDS

    env = {"LOGINETL_MASK_EXTRA": " email, phone,,email "}
    assert mask_extra_from_env(KNOWN_FIELDS, env) == {"email", "phone"}
    assert mask_extra_from_env(KNOWN_FIELDS, {}) == frozenset()
    with pytest.raises(ConfigError, match="names device_id, ip: it lists fields beyond"):
        mask_extra_from_env(KNOWN_FIELDS, {"LOGINETL_MASK_EXTRA": "ip,email,device_id"})
