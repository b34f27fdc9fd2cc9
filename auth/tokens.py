"""Short-lived access tokens and longer refresh tokens: HS256 JWTs signed with the settings' secret.

Claims: `sub` user id, `org` the organization the token acts in, `typ` access or refresh, `ver`
the user's token version (logout bumps it, which revokes every earlier token), `iat`, `exp`, `jti`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"


class InvalidToken(Exception):
    """Expired, tampered, malformed or of the wrong type."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    org_id: str
    token_type: str
    version: int
    expires_at: datetime


def issue_token(
    secret: str, user_id: str, org_id: str, token_type: str, version: int, lifetime: timedelta
) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires_at = now + lifetime
    payload = {
        "sub": user_id,
        "org": org_id,
        "typ": token_type,
        "ver": version,
        "iat": now,
        "exp": expires_at,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), expires_at


def read_token(secret: str, token: str, expected_type: str) -> TokenClaims:
    try:
        payload = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "org", "typ", "ver", "exp", "iat"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token has expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("token is invalid") from exc
    if payload["typ"] != expected_type:
        raise InvalidToken(f"expected an {expected_type} token")
    if (
        not isinstance(payload["sub"], str)
        or not isinstance(payload["org"], str)
        or not isinstance(payload["ver"], int)
    ):
        raise InvalidToken("token is invalid")
    return TokenClaims(
        payload["sub"],
        payload["org"],
        payload["typ"],
        payload["ver"],
        datetime.fromtimestamp(payload["exp"], UTC),
    )
