"""Secrets the server must read back (an organization's judge API key): sealed with Fernet (AES-128-CBC with an HMAC)
under a key derived from `WLOPS_SECRET_KEY`, so the database alone does not give them away. Changing the secret key
makes them unreadable: they must then be set again."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

PURPOSE = b"wlops sealed secrets v1\x00"


class Unreadable(ValueError):
    """The sealed value was not sealed under the current secret key."""


def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(PURPOSE + secret_key.encode()).digest()))


def seal(secret_key: str, value: str) -> str:
    return _fernet(secret_key).encrypt(value.encode()).decode()


def unseal(secret_key: str, sealed: str) -> str:
    try:
        return _fernet(secret_key).decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise Unreadable("sealed under another WLOPS_SECRET_KEY") from exc
