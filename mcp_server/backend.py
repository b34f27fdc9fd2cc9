"""What every MCP tool reaches (`Backend`): the settings, the database, object storage and Temporal; who calls
(`auth.callers.authenticate`, as the API decides it) with which scopes; domain errors as tool errors; the audit log of
every confirmed change. `mcp_server.server` builds the server over it, `mcp_server.tools` holds the tools.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from sqlalchemy.orm import Session, sessionmaker

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
    def reading(self, ctx: Context, *required: Scope) -> Iterator[tuple[Caller, Session]]:
        """A read tool's caller, who must hold `required`, and a database session; domain errors as tool errors."""
        caller = self.caller(ctx, *required)
        with self.domain_errors(), self.sessions() as session:
            yield caller, session

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
