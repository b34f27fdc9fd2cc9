"""The MCP server: who calls each tool (`auth.callers.authenticate`, as the API decides it), in which organization,
with which scopes; domain errors as tool errors; the audit log of every confirmed change.

Over stdio the credential is the process's (`WLOPS_API_KEY`: an API key or an access token); over streamable HTTP it
is each request's `Authorization: Bearer` header. Each tool call authenticates again, so a revoked key stops at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as Scope_

from auth.callers import Caller, authenticate
from core.access import Scope
from core.errors import DomainError, Unauthenticated, http_status
from core.settings import Settings
from db.models import AuditEntry
from db.session import get_sessionmaker
from services.registry import Actor
from storage.object_store import ObjectStore, object_store_from_settings
from temporal_client import TemporalConnection

log = logging.getLogger(__name__)

INSTRUCTIONS = """WLOps operations: read registered models, their versions and aliases, tasks and their reports,
scenario suites and their runs; run a suite, promote a version through the gate, roll an alias back. A tool that
changes something only previews what it would do unless called with `confirm: true`."""


@dataclass
class Backend:
    """What every tool reaches: the settings, the database, object storage and Temporal, and the credential of a stdio
    process (None over HTTP: each request brings its own)."""

    settings: Settings
    sessions: sessionmaker[Session]
    store: ObjectStore
    temporal: TemporalConnection
    credential: str | None = None

    def caller(self, ctx: Context, *required: Scope) -> Caller:
        """The authenticated caller, who must hold every scope in `required` (else a tool error naming the missing
        one)."""
        token = self.credential if self.credential is not None else _bearer(ctx)
        with self.domain_errors(), self.sessions() as session:
            return authenticate(session, self.settings, token).require(*required)

    @contextmanager
    def domain_errors(self) -> Iterator[None]:
        """A refused operation as a tool error with the API's status and message (`404 NotFound: model x not
        found`)."""
        try:
            yield
        except DomainError as error:
            raise ToolError(f"{http_status(error)} {type(error).__name__}: {error.message}") from error

    @contextmanager
    def operation(
        self, ctx: Context, *required: Scope, confirm: bool, action: str, resource_type: str, resource_id: str
    ) -> Iterator[Caller]:
        """A tool that changes something: the authenticated caller, who must hold `required`. Unconfirmed, the block
        previews and refusals are tool errors; confirmed, the call is audited whatever its outcome (a missing scope
        too), as the API audits every mutating request."""
        caller = self.caller(ctx)
        if not confirm:
            with self.domain_errors():
                yield caller.require(*required)
            return
        with self._change(caller, action, resource_type, resource_id):
            yield caller.require(*required)

    @contextmanager
    def _change(self, caller: Caller, action: str, resource_type: str, resource_id: str) -> Iterator[None]:
        """A confirmed change, audited like the API's mutations: who, which tool, which resource, the status the API
        would have answered."""
        status = 500
        try:
            with self.domain_errors():
                try:
                    yield
                except DomainError as error:
                    status = http_status(error)
                    raise
            status = 200
        finally:
            self._audit(caller, action, resource_type, resource_id, status)

    def _audit(self, caller: Caller, action: str, resource_type: str, resource_id: str, status: int) -> None:
        entry = AuditEntry(
            org_id=caller.org_id,
            actor_user_id=caller.user_id,
            actor_key_id=caller.api_key_id,
            action=f"MCP {action}",
            resource_type=resource_type,
            resource_id=resource_id[:200],
            status_code=status,
        )
        try:
            with self.sessions() as session:
                session.add(entry)
                session.commit()
        except Exception:  # the audit must never turn a finished change into an error
            log.exception("could not write the audit entry of MCP %s (status %s)", action, status)


def actor(caller: Caller) -> Actor:
    return Actor(caller.user_id, caller.api_key_id, caller.scopes)


def _bearer(ctx: Context) -> str:
    header = (ctx.headers or {}).get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ToolError(
            f"401 {Unauthenticated.__name__}: authentication required: send `Authorization: Bearer <access token or "
            "API key>`"
        )
    return token.strip()


def backend_for(settings: Settings, credential: str | None = None) -> Backend:
    store = object_store_from_settings(settings)
    sessions = get_sessionmaker(settings.resolved_database_url)
    return Backend(settings, sessions, store, TemporalConnection(settings), credential)


def create_mcp_server(settings: Settings, credential: str | None = None) -> MCPServer:
    """The server with every tool, over an up-to-date database (`wlops mcp` migrates before it starts); `credential`:
    the caller of a stdio process."""
    settings.check_secret()
    return _server(backend_for(settings, credential))


def http_app(settings: Settings, host: str) -> ASGIApp:
    """The streamable HTTP app at `/mcp`, refusing a request without valid credentials before the protocol sees it."""
    settings.check_secret()
    backend = backend_for(settings)
    return RequireCaller(_server(backend).streamable_http_app(host=host), backend)


def _server(backend: Backend) -> MCPServer:
    from mcp_server.tools import add_tools

    server: MCPServer = MCPServer("wlops", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING")
    add_tools(server, backend)
    return server


class RequireCaller:
    """Streamable HTTP: 401 (`WWW-Authenticate: Bearer`) for a request without a valid access token or API key, as
    the API answers; each tool call then authenticates again and checks its scopes."""

    def __init__(self, app: ASGIApp, backend: Backend):
        self.app = app
        self.backend = backend

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan starts the session manager
            return await self.app(scope, receive, send)
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authentication required: send `Authorization: Bearer <access token or API key>`")
            await run_in_threadpool(self._authenticate, token.strip())
        except Unauthenticated as error:
            response = JSONResponse({"detail": error.message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)

    def _authenticate(self, token: str) -> None:
        with self.backend.sessions() as session:
            authenticate(session, self.backend.settings, token)
