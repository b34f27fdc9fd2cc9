"""API key secrets: `wlk_<prefix>_<secret>`. The prefix finds the row; only a SHA-256 of the whole
key is stored (the secret has 256 bits of entropy, so a fast hash is enough) and the key is shown once."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PATTERN = re.compile(r"^wlk_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")


def new_api_key() -> tuple[str, str, str]:
    """(key, prefix, hash of the key)."""
    prefix = secrets.token_hex(6)
    key = f"wlk_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key, or None (then it is not an API key)."""
    match = KEY_PATTERN.match(key)
    return match.group(1) if match else None


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), stored_hash)
