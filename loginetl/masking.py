"""Keyed masking of personal data, and the key ring that reads it back.

Two modes, chosen by LOGINETL_MASK_MODE:

- `hmac` (the default): HMAC-SHA256 as 64 lowercase hex characters. One-way: equal inputs give
  equal masks, so analysts can still count duplicates, but no one can go back from a mask to
  the value; unlike a plain hash, the 2^32 IPv4 addresses cannot simply be hashed and looked up.
- `siv`: AES-SIV (RFC 5297, deterministic authenticated encryption), written `siv:` + the
  unpadded URL-safe base64 of the ciphertext. Still deterministic, so duplicates stay
  identifiable, but holders of the key can recover the value (`unmask`) and re-encrypt it under
  a new key (`rekey`). The prefix says the mode of every stored mask.

The primary key (LOGINETL_MASK_KEY) masks new rows; retired keys (LOGINETL_OLD_MASK_KEYS,
comma-separated) only read: lookup, erase, verify-masking, unmask, rekey. Every row carries the
id of the key it was masked under.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .config import remember_secret, secret_from_env
from .errors import ConfigError

MASK_KEY_ENV = "LOGINETL_MASK_KEY"
OLD_MASK_KEYS_ENV = "LOGINETL_OLD_MASK_KEYS"
MASK_MODE_ENV = "LOGINETL_MASK_MODE"
MASK_EXTRA_ENV = "LOGINETL_MASK_EXTRA"
MIN_KEY_LENGTH = 16
HMAC, SIV = "hmac", "siv"
MODES = (HMAC, SIV)
SIV_PREFIX = "siv:"
PRIMARY, RETIRED, UNKNOWN = "primary", "retired", "unknown"


class CannotUnmask(ValueError):
    """The mask is one-way, malformed, or does not decrypt under this key."""


class MaskKey:
    """One secret key, in one mode for new masks; its repr and `key_id` are safe to show, the
    key itself never is."""

    __slots__ = ("_hmac", "_secret", "_siv", "key_id", "mode")

    def __init__(self, secret: str, mode: str = HMAC, env: str = MASK_KEY_ENV) -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"{env} is too short: use at least {MIN_KEY_LENGTH} characters (for example "
                "the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        if mode not in MODES:
            raise ConfigError(f"{MASK_MODE_ENV} must be one of {', '.join(MODES)}")
        remember_secret(secret)
        self._secret = secret.encode()
        self.mode = mode
        # Names the key in each row without revealing it, so rows masked under a rotated key
        # can be told apart. The same for both modes: the mode is in the mask itself.
        self.key_id = hmac.new(self._secret, b"loginetl key id", hashlib.sha256).hexdigest()[:16]
        # The key's HMAC state, made once: each mask starts from a copy of it, where a one-shot
        # hmac.digest would set the key up again on every call.
        self._hmac = hmac.new(self._secret, digestmod=hashlib.sha256)
        # AES-256-SIV takes a 512-bit key: derived from the secret, never the secret itself.
        derive = HKDF(hashes.SHA256(), 64, salt=None, info=b"loginetl aes-siv")
        self._siv = AESSIV(derive.derive(self._secret))

    def mask(self, value: str) -> str:
        """The mask of a new row, in this key's mode."""
        return self.siv_mask(value) if self.mode == SIV else self.hmac_mask(value)

    def hmac_mask(self, value: str) -> str:
        state = self._hmac.copy()
        state.update(value.encode())
        return state.hexdigest()

    def siv_mask(self, value: str) -> str:
        sealed = self._siv.encrypt(value.encode(), None)
        return SIV_PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def masks(self, value: str) -> tuple[str, str]:
        """What `value` is stored as under this key, in either mode."""
        return self.hmac_mask(value), self.siv_mask(value)

    def unmask(self, mask: str) -> str:
        if mode_of(mask) != SIV:
            raise CannotUnmask("one-way (hmac) mask")
        text = mask.removeprefix(SIV_PREFIX)
        try:
            sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            return self._siv.decrypt(sealed, None).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise CannotUnmask("does not decrypt under this key") from None

    def __repr__(self) -> str:
        return f"MaskKey(key_id={self.key_id!r})"


def mode_of(mask: str | None) -> str:
    return SIV if mask and mask.startswith(SIV_PREFIX) else HMAC


@dataclass(frozen=True)
class KeyRing:
    """The primary key, which masks new rows, and the retired keys still used to read."""

    primary: MaskKey
    retired: tuple[MaskKey, ...] = ()

    @property
    def keys(self) -> tuple[MaskKey, ...]:
        return (self.primary, *self.retired)

    def get(self, key_id: str | None) -> MaskKey | None:
        return next((key for key in self.keys if key.key_id == key_id), None)

    def status_of(self, key_id: str | None) -> str:
        if key_id == self.primary.key_id:
            return PRIMARY
        return RETIRED if self.get(key_id) else UNKNOWN

    def retired_ids(self) -> list[str]:
        return [key.key_id for key in self.retired]

    def masks(self, value: str) -> list[str]:
        """Every form `value` may be stored in: both modes under every key of the ring."""
        return [mask for key in self.keys for mask in key.masks(value)]


def mask_mode_from_env(environ: Mapping[str, str] = os.environ) -> str:
    mode = (environ.get(MASK_MODE_ENV) or HMAC).strip().lower()
    if mode not in MODES:
        raise ConfigError(f"{MASK_MODE_ENV} must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def mask_key_from_env(environ: Mapping[str, str] = os.environ) -> MaskKey:
    secret = secret_from_env(environ, MASK_KEY_ENV)
    if not secret:
        raise ConfigError(
            f"{MASK_KEY_ENV} is not set: the mask key is required to mask ip and device_id "
            "(set it in the environment or in .env)"
        )
    return MaskKey(secret, mask_mode_from_env(environ))


def old_mask_keys_from_env(environ: Mapping[str, str] = os.environ) -> list[MaskKey]:
    """The retired keys, comma-separated (LOGINETL_OLD_MASK_KEYS, or the file that
    LOGINETL_OLD_MASK_KEYS_FILE names, where one per line also works); blanks around them are
    ignored."""
    listed = (secret_from_env(environ, OLD_MASK_KEYS_ENV) or "").replace("\n", ",")
    secrets = [part.strip() for part in listed.split(",")]
    return [MaskKey(secret, env=OLD_MASK_KEYS_ENV) for secret in secrets if secret]


def mask_extra_from_env(
    known: tuple[str, ...], environ: Mapping[str, str] = os.environ
) -> frozenset[str]:
    """The extra fields to mask when they are kept (LOGINETL_MASK_EXTRA, comma-separated);
    a name among `known` (the seven fields of a login, never extra) is a configuration error."""
    names = {part.strip() for part in (environ.get(MASK_EXTRA_ENV) or "").split(",")}
    names.discard("")
    clash = sorted(names.intersection(known))
    if clash:
        raise ConfigError(
            f"{MASK_EXTRA_ENV} names {', '.join(clash)}: it lists fields beyond a login's "
            f"known seven ({', '.join(known)}), whose handling is fixed (ip and device_id are "
            "always masked)"
        )
    return frozenset(names)


def key_ring_from_env(environ: Mapping[str, str] = os.environ) -> KeyRing:
    primary = mask_key_from_env(environ)
    retired: dict[str, MaskKey] = {}
    for key in old_mask_keys_from_env(environ):
        if key.key_id != primary.key_id:
            retired.setdefault(key.key_id, key)
    return KeyRing(primary, tuple(retired.values()))
