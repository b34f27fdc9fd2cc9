"""The FastAPI application factory."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api.errors import ERROR_RESPONSES, ApiError, Unavailable
from api.middleware import AuditLog, BodyLimit, RejectNul
from api.routes import api_keys, audit, auth, datasets, orgs, tasks
from api.security import LoginThrottle, check_every_route_is_authorized
from core.settings import Settings, get_settings
from db.session import get_sessionmaker, migrate
from storage.object_store import object_store_from_settings


ROUTERS = (auth.router, orgs.router, api_keys.router, audit.router, datasets.router, tasks.router)
DESCRIPTION = """Durable fine-tuning runs of small language models on Temporal.

Log in with `POST /api/v1/auth/login` and send the access token (or an API key) as
`Authorization: Bearer ...` on every other call (the Authorize button here does that)."""


class TemporalConnection:
    """Connects on first use, so the API starts (and /healthz answers) before Temporal is up."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await Client.connect(self.settings.resolved_temporal_address, namespace=self.settings.temporal_namespace)
                except Exception as exc:  # connection refused, DNS, TLS: all mean the same to a caller
                    raise Unavailable(f"Temporal at {self.settings.resolved_temporal_address} is unreachable: {exc}") from exc
            return self._client


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_secret()
    migrate(settings.resolved_database_url)
    app = FastAPI(title="WLOps", version="0.1.0", description=DESCRIPTION)
    app.state.settings = settings
    app.state.sessions = get_sessionmaker(settings.resolved_database_url)
    app.state.store = object_store_from_settings(settings)
    app.state.temporal = TemporalConnection(settings)
    app.state.login_throttle = LoginThrottle(settings.login_failures_per_minute)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each invalid value back (`input`), a password included: say where and why only
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    check_every_route_is_authorized([route for router in ROUTERS for route in router.routes] + list(app.routes))
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    # added innermost first: the body limit and the NUL check answer before the audit log or any route sees the request
    app.add_middleware(AuditLog, sessions=app.state.sessions)
    app.add_middleware(RejectNul)
    app.add_middleware(BodyLimit, request_bytes=settings.max_request_bytes, upload_bytes=settings.max_upload_bytes)
    return app
