"""The MCP server: its tools (`mcp_server.tools`) over the backend every tool reaches (`mcp_server.backend`: who calls
each tool, with which scopes; domain errors as tool errors; the audit log of every confirmed change), over stdio or
streamable HTTP.

Over stdio the credential is the process's (`WLOPS_API_KEY`: an API key or an access token); over streamable HTTP it
is each request's `Authorization: Bearer` header. Each tool call authenticates again, so a revoked key stops at once.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as Scope_

from auth.callers import authenticate
from core.errors import Unauthenticated
from core.settings import Settings
from mcp_server.backend import Backend, backend_for
from mcp_server.tools import add_tools

INSTRUCTIONS = """WLOps operations: read registered models, their versions and aliases, tasks and their reports,
scenario suites and their runs; run a suite, promote a version through the gate, roll an alias back. A tool that
changes something only previews what it would do unless called with `confirm: true`."""


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
