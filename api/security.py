"""The one dependency that decides every request: who is calling, in which organization, with
which scopes. Anonymous or invalid credentials are 401, a missing scope is 403; services then
look resources up only inside the caller's organization, so another tenant's ids are 404.

`create_app` refuses to start if any route outside `PUBLIC_ROUTES` lacks `authorize(...)`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Callable

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.errors import Forbidden, TooManyRequests, Unauthorized
from auth import api_keys
from auth.accounts import membership
from auth.tokens import ACCESS, InvalidToken, read_token
from core.access import ROLE_SCOPES, Role, Scope, key_scopes
from db.models import ApiKey, User, as_utc, utcnow

PUBLIC_ROUTES = {("GET", "/healthz"), ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh")}
LAST_USED_RESOLUTION = timedelta(minutes=1)  # how stale `last_used_at` may get (saves a write per request)

bearer = HTTPBearer(auto_error=False, description="An access token from POST /api/v1/auth/login, or an API key (wlk_...).")


@dataclass(frozen=True)
class Caller:
    user_id: str
    org_id: str
    role: Role
    scopes: frozenset[Scope]
    api_key_id: str | None = None


def authenticate(session, settings, token: str) -> Caller:
    """The caller behind a bearer token or API key, or Unauthorized."""
    if api_keys.key_prefix(token) is not None:
        return _from_api_key(session, token)
    try:
        claims = read_token(settings.secret_key, token, ACCESS)
    except InvalidToken as exc:
        raise Unauthorized(str(exc)) from exc
    user = session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("token is invalid")
    if claims.version != user.token_version:
        raise Unauthorized("token has been revoked")
    member = membership(session, claims.org_id, user.id)
    if member is None:
        raise Unauthorized("no longer a member of the token's organization")
    role = Role(member.role)
    return Caller(user.id, claims.org_id, role, ROLE_SCOPES[role])


def _from_api_key(session, key: str) -> Caller:
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == api_keys.key_prefix(key)))
    if row is None or not api_keys.matches(key, row.secret_hash):
        raise Unauthorized("API key is invalid")
    now = utcnow()
    if row.revoked_at is not None:
        raise Unauthorized("API key has been revoked")
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        raise Unauthorized("API key has expired")
    creator = session.get(User, row.created_by)
    member = membership(session, row.org_id, row.created_by) if creator is not None and creator.is_active else None
    if member is None:
        raise Unauthorized("API key's creator is no longer a member of its organization")
    if row.last_used_at is None or now - as_utc(row.last_used_at) > LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.commit()
    return Caller(row.created_by, row.org_id, Role(member.role), key_scopes({Scope(s) for s in row.scopes}, Role(member.role)), api_key_id=row.id)


def authorize(*required: Scope) -> Callable[..., Caller]:
    """A dependency: the authenticated caller, who must hold every scope in `required`."""

    def dependency(request: Request, session: SessionDep, settings: SettingsDep,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
        if credentials is None or not credentials.credentials:
            raise Unauthorized("authentication required: send `Authorization: Bearer <access token or API key>`")
        caller = authenticate(session, settings, credentials.credentials)
        request.state.caller = caller  # for the audit log
        missing = [scope.value for scope in required if scope not in caller.scopes]
        if missing:
            raise Forbidden(f"requires {', '.join(missing)}; you have role {caller.role.value}"
                            + (" through an API key with scopes " + ", ".join(sorted(caller.scopes)) if caller.api_key_id else ""))
        return caller

    dependency.wlops_required_scopes = required  # type: ignore[attr-defined]
    return dependency


def route_scopes(route: APIRoute) -> tuple[Scope, ...] | None:
    """The scopes `authorize` demands on a route, or None if the route has no `authorize` dependency."""
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if hasattr(dependant.call, "wlops_required_scopes"):
            return dependant.call.wlops_required_scopes
        stack.extend(dependant.dependencies)
    return None


def check_every_route_is_authorized(routes) -> None:
    unguarded = [f"{method} {route.path}" for route in routes if isinstance(route, APIRoute) for method in route.methods
                 if (method, route.path) not in PUBLIC_ROUTES and route_scopes(route) is None]
    if unguarded:
        raise RuntimeError(f"routes without authorize(...): {', '.join(sorted(unguarded))}")


class LoginThrottle:
    """Failed logins per (username, client) in a sliding minute; over the limit, logins answer 429.
    Per process: behind several API replicas each counts its own."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= self.clock() - 60:
            failures.popleft()
        return failures

    def check(self, username: str, client: str) -> None:
        with self._lock:
            if len(self._recent((username, client))) >= self.per_minute:
                raise TooManyRequests(f"too many failed logins for {username!r}: at most {self.per_minute} per minute; try again later")

    def failed(self, username: str, client: str) -> None:
        with self._lock:
            self._recent((username, client)).append(self.clock())

    def succeeded(self, username: str, client: str) -> None:
        with self._lock:
            self._failures.pop((username, client), None)


# What route signatures use: `caller: TasksWrite`.
AnyCaller = Annotated[Caller, Depends(authorize())]
DatasetsRead = Annotated[Caller, Depends(authorize(Scope.DATASETS_READ))]
DatasetsWrite = Annotated[Caller, Depends(authorize(Scope.DATASETS_WRITE))]
TasksRead = Annotated[Caller, Depends(authorize(Scope.TASKS_READ))]
TasksWrite = Annotated[Caller, Depends(authorize(Scope.TASKS_WRITE))]
MembersRead = Annotated[Caller, Depends(authorize(Scope.MEMBERS_READ))]
MembersWrite = Annotated[Caller, Depends(authorize(Scope.MEMBERS_WRITE))]
KeysManage = Annotated[Caller, Depends(authorize(Scope.KEYS_MANAGE))]
AuditRead = Annotated[Caller, Depends(authorize(Scope.AUDIT_READ))]
OrgManage = Annotated[Caller, Depends(authorize(Scope.ORG_MANAGE))]
