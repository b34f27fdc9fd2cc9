"""Who is calling: the organization, role and scopes behind an access token or an API key.

The one place credentials are turned into a `Caller`, shared by every front end (the HTTP API now,
the serving process next), so the access rules are never copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import api_keys
from auth.accounts import membership
from auth.tokens import ACCESS, InvalidToken, read_token
from core.access import ROLE_SCOPES, Role, Scope, key_scopes
from core.clock import as_utc, utcnow
from core.errors import Forbidden, Unauthenticated
from core.settings import Settings
from db.models import ApiKey, User

LAST_USED_RESOLUTION = timedelta(minutes=1)  # how stale `last_used_at` may get (saves a write per request)


@dataclass(frozen=True)
class Caller:
    user_id: str
    org_id: str
    role: Role
    scopes: frozenset[Scope]
    api_key_id: str | None = None

    def require(self, *required: Scope) -> Caller:
        """The caller itself if it holds every scope in `required`, else Forbidden naming what is missing."""
        missing = [scope.value for scope in required if scope not in self.scopes]
        if missing:
            raise Forbidden(
                f"requires {', '.join(missing)}; you have role {self.role.value}"
                + (" through an API key with scopes " + ", ".join(sorted(self.scopes)) if self.api_key_id else "")
            )
        return self


def authenticate(session: Session, settings: Settings, token: str) -> Caller:
    """The caller behind a bearer token or API key, or Unauthenticated."""
    if api_keys.key_prefix(token) is not None:
        return _from_api_key(session, token)
    try:
        claims = read_token(settings.secret_key, token, ACCESS)
    except InvalidToken as exc:
        raise Unauthenticated(str(exc)) from exc
    user = session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("token is invalid")
    if claims.version != user.token_version:
        raise Unauthenticated("token has been revoked")
    member = membership(session, claims.org_id, user.id)
    if member is None:
        raise Unauthenticated("no longer a member of the token's organization")
    role = Role(member.role)
    return Caller(user.id, claims.org_id, role, ROLE_SCOPES[role])


def _from_api_key(session: Session, key: str) -> Caller:
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == api_keys.key_prefix(key)))
    if row is None or not api_keys.matches(key, row.secret_hash):
        raise Unauthenticated("API key is invalid")
    now = utcnow()
    if row.revoked_at is not None:
        raise Unauthenticated("API key has been revoked")
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        raise Unauthenticated("API key has expired")
    creator = session.get(User, row.created_by)
    member = membership(session, row.org_id, row.created_by) if creator is not None and creator.is_active else None
    if member is None:
        raise Unauthenticated("API key's creator is no longer a member of its organization")
    if row.last_used_at is None or now - as_utc(row.last_used_at) > LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.commit()
    return Caller(
        row.created_by,
        row.org_id,
        Role(member.role),
        key_scopes({Scope(s) for s in row.scopes}, Role(member.role)),
        api_key_id=row.id,
    )
