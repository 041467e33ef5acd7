"""Keyed masking: the mask key, its checks, and its redaction from every output.

Each test builds its own MaskKey: a key built at import time would be checked once, not by
the test that uses it.
"""

import hashlib
import hmac

import pytest
from typer.testing import CliRunner

from loginetl import config
from loginetl.cli import app
from loginetl.errors import ConfigError
from loginetl.masking import MIN_KEY_LENGTH, MaskKey, mask_key_from_env
from tests.support.data import MASK_KEY

TOO_SHORT = (
    "LOGINETL_MASK_KEY is too short: use at least 16 characters (for example the output of "
    "`python -c 'import secrets; print(secrets.token_hex(32))'`)"
)
NOT_SET = (
    "LOGINETL_MASK_KEY is not set: the mask key is required to mask ip and device_id "
    "(set it in the environment or in .env)"
)


def test_a_key_of_exactly_the_minimum_length_is_accepted_one_shorter_is_refused():
    assert MIN_KEY_LENGTH == 16
    key = MaskKey("k" * 16)
    assert key.mask("1.2.3.4") == hmac.new(b"k" * 16, b"1.2.3.4", hashlib.sha256).hexdigest()
    with pytest.raises(ConfigError) as refused:
        MaskKey("k" * 15)
    assert str(refused.value) == TOO_SHORT
    assert refused.value.exit_code == 2


def test_the_missing_key_message_says_what_to_set_and_where():
    for environ in ({}, {"LOGINETL_MASK_KEY": ""}):
        with pytest.raises(ConfigError) as missing:
            mask_key_from_env(environ)
        assert str(missing.value) == NOT_SET
    key = mask_key_from_env({"LOGINETL_MASK_KEY": MASK_KEY})
    assert key.mask("x") == MaskKey(MASK_KEY).mask("x")


def test_the_cli_shows_the_key_errors_as_one_line_with_exit_code_2():
    runner = CliRunner()
    unset = runner.invoke(app, ["peek"], env={"LOGINETL_MASK_KEY": ""})
    assert (unset.exit_code, unset.output) == (2, f"Error: {NOT_SET}\n")
    short = runner.invoke(app, ["peek"], env={"LOGINETL_MASK_KEY": "short-key"})
    assert (short.exit_code, short.output) == (2, f"Error: {TOO_SHORT}\n")


def test_the_key_id_is_a_fixed_digest_of_the_key_so_stored_rows_keep_matching():
    # Rows record mask_key_id; were its derivation to change, every stored row would look
    # masked under another key (verify-masking --strict-key would fail on all of them).
    assert MaskKey(MASK_KEY).key_id == "1b514d1c3dea0fd3"
    secret = "0123456789abcdef0123456789abcdef"
    expected = hmac.new(secret.encode(), b"loginetl key id", hashlib.sha256).hexdigest()[:16]
    assert MaskKey(secret).key_id == expected
    assert repr(MaskKey(secret)) == f"MaskKey(key_id={expected!r})"


def test_masks_are_hmac_sha256_of_the_utf8_text():
    key = MaskKey(MASK_KEY)
    value = "appareil-é-设备"
    assert (
        key.mask(value)
        == hmac.new(MASK_KEY.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()
    )
    # A non-ASCII key is used as its UTF-8 bytes.
    accented = "clé-de-masquage-très-secrète"
    assert (
        MaskKey(accented).mask("1.2.3.4")
        == hmac.new(accented.encode("utf-8"), b"1.2.3.4", hashlib.sha256).hexdigest()
    )


def test_building_a_mask_key_hides_it_from_every_redacted_text():
    assert config.redact(f"a line with {MASK_KEY} in it") == f"a line with {MASK_KEY} in it"
    MaskKey(MASK_KEY)
    assert config.redact(f"a line with {MASK_KEY} in it") == "a line with *** in it"


def test_a_key_from_the_environment_is_hidden_too():
    mask_key_from_env({"LOGINETL_MASK_KEY": MASK_KEY})
    assert config.redact(f"LOGINETL_MASK_KEY={MASK_KEY}") == "LOGINETL_MASK_KEY=***"


def test_a_cli_error_line_after_the_key_is_built_never_shows_it():
    # The key pasted where the queue name belongs: the error names the queue URL, so it would
    # carry the key; the CLI has built the MaskKey by then, and the line shows *** instead.
    queue_url = f"http://127.0.0.1:1/000000000000/{MASK_KEY}"
    result = CliRunner().invoke(
        app,
        ["peek", "--queue-url", queue_url],
        env={"LOGINETL_MASK_KEY": MASK_KEY, "AWS_MAX_ATTEMPTS": "1"},
    )
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: cannot read attributes of http://127.0.0.1:1/000000000000/***: "
    )
    assert MASK_KEY not in result.output
