"""The one dependency that decides every request: who is calling (`auth.callers.authenticate`), in which
organization, with which scopes. Anonymous or invalid credentials are 401, a missing scope is 403;
services then look resources up only inside the caller's organization, so another tenant's ids are 404.

`create_app` refuses to start if any route outside `PUBLIC_ROUTES` lacks `authorize(...)`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SessionDep, SettingsDep
from auth.callers import Caller, authenticate
from core.access import Scope
from core.errors import RateLimited, Unauthenticated

# the API's routes open to anyone (`/metrics`, also open, is served outside the API's routes by observability.http)
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
}

bearer = HTTPBearer(
    auto_error=False, description="An access token from POST /api/v1/auth/login, or an API key (wlk_...)."
)


def authorize(*required: Scope) -> Callable[..., Caller]:
    """A dependency: the authenticated caller, who must hold every scope in `required`."""

    def dependency(
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        if credentials is None or not credentials.credentials:
            raise Unauthenticated("authentication required: send `Authorization: Bearer <access token or API key>`")
        caller = authenticate(session, settings, credentials.credentials)
        request.state.caller = caller  # for the audit log
        return caller.require(*required)

    # read back by route_scopes (the route walk, the startup check); a function object takes any attribute
    dependency.wlops_required_scopes = required  # type: ignore[attr-defined]
    return dependency


def route_scopes(route: APIRoute) -> tuple[Scope, ...] | None:
    """The scopes `authorize` demands on a route, or None if the route has no `authorize` dependency."""
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        scopes: tuple[Scope, ...] | None = getattr(dependant.call, "wlops_required_scopes", None)
        if scopes is not None:
            return scopes
        stack.extend(dependant.dependencies)
    return None


def check_every_route_is_authorized(routes) -> None:
    unguarded = [
        f"{method} {route.path}"
        for route in routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
        if (method, route.path) not in PUBLIC_ROUTES and route_scopes(route) is None
    ]
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
                raise RateLimited(
                    f"too many failed logins for {username!r}: at most {self.per_minute} per minute; try again later"
                )

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
KnowledgeRead = Annotated[Caller, Depends(authorize(Scope.KNOWLEDGE_READ))]
KnowledgeWrite = Annotated[Caller, Depends(authorize(Scope.KNOWLEDGE_WRITE))]
# a dataset made from a knowledge base
KnowledgeToDataset = Annotated[Caller, Depends(authorize(Scope.KNOWLEDGE_READ, Scope.DATASETS_WRITE))]
ModelsRead = Annotated[Caller, Depends(authorize(Scope.MODELS_READ))]
ModelsWrite = Annotated[Caller, Depends(authorize(Scope.MODELS_WRITE))]
# move an alias without the remaining checks (a release promoted by hand), as forcing a promotion past the gate
ModelsForce = Annotated[Caller, Depends(authorize(Scope.MODELS_WRITE, Scope.MODELS_FORCE))]
# a task's adapter as a version
ModelsRegister = Annotated[Caller, Depends(authorize(Scope.MODELS_WRITE, Scope.TASKS_READ))]
InferenceUse = Annotated[Caller, Depends(authorize(Scope.INFERENCE))]  # rate the serving process's answers
# answers with feedback become a dataset
QAToDataset = Annotated[Caller, Depends(authorize(Scope.MODELS_READ, Scope.DATASETS_WRITE))]
# the lineage graph crosses datasets, tasks, knowledge bases and models: it needs to read all four
LineageRead = Annotated[
    Caller, Depends(authorize(Scope.DATASETS_READ, Scope.TASKS_READ, Scope.KNOWLEDGE_READ, Scope.MODELS_READ))
]
MembersRead = Annotated[Caller, Depends(authorize(Scope.MEMBERS_READ))]
MembersWrite = Annotated[Caller, Depends(authorize(Scope.MEMBERS_WRITE))]
KeysManage = Annotated[Caller, Depends(authorize(Scope.KEYS_MANAGE))]
AuditRead = Annotated[Caller, Depends(authorize(Scope.AUDIT_READ))]
OrgManage = Annotated[Caller, Depends(authorize(Scope.ORG_MANAGE))]
