"""Keyed masking of personal data: HMAC-SHA256 under a secret key from the environment.

Equal inputs give equal masks, so analysts can still count duplicates, but without the key no
one can go back from a mask to the value: unlike a plain hash, the 2^32 IPv4 addresses cannot
simply be hashed and looked up.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from .config import remember_secret, secret_from_env
from .errors import ConfigError

MASK_KEY_ENV = "LOGINETL_MASK_KEY"
MIN_KEY_LENGTH = 16


class MaskKey:
    """The secret key; its repr and `key_id` are safe to show, the key itself never is."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"{MASK_KEY_ENV} is too short: use at least {MIN_KEY_LENGTH} characters "
                "(for example the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        remember_secret(secret)
        self._secret = secret.encode()
        # Names the key in each row without revealing it, so rows masked under a rotated key
        # can be told apart.
        self.key_id = hmac.new(self._secret, b"loginetl key id", hashlib.sha256).hexdigest()[:16]

    def mask(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"MaskKey(key_id={self.key_id!r})"


def mask_key_from_env(environ: Mapping[str, str] = os.environ) -> MaskKey:
    secret = secret_from_env(environ, MASK_KEY_ENV)
    if not secret:
        raise ConfigError(
            f"{MASK_KEY_ENV} is not set: the mask key is required to mask ip and device_id "
            "(set it in the environment or in .env)"
        )
    return MaskKey(secret)
