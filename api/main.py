"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

import console
from api.errors import ERROR_RESPONSES, domain_error_response
from api.middleware import AuditLog, BodyLimit, RejectNul, SecurityHeaders
from api.routes import (
    api_keys,
    audit,
    auth,
    datasets,
    erasures,
    knowledge,
    lineage,
    models,
    orgs,
    qa,
    releases,
    suites,
    tasks,
)
from api.security import LoginThrottle, check_every_route_is_authorized
from core.errors import DomainError
from core.settings import Settings, get_settings
from db.session import get_sessionmaker
from observability.http import instrument_app
from observability.metrics import set_task_counts
from services.knowledge import IndexCache
from services.tasks import count_by_status
from storage.object_store import object_store_from_settings
from temporal_client import TemporalConnection

ROUTERS = (
    auth.router,
    orgs.router,
    api_keys.router,
    audit.router,
    datasets.router,
    tasks.router,
    knowledge.router,
    models.router,
    qa.router,
    lineage.router,
    erasures.router,
    suites.router,
    releases.router,
)
DESCRIPTION = """Durable fine-tuning runs of small language models on Temporal.

Log in with `POST /api/v1/auth/login` and send the access token (or an API key) as
`Authorization: Bearer ...` on every other call (the Authorize button here does that)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over an up-to-date database (migrations run where a process starts: `wlops api`, `wlops db upgrade`)."""
    settings = settings or get_settings()
    settings.check_secret()
    app = FastAPI(title="WLOps", version="0.1.0", description=DESCRIPTION)
    app.state.settings = settings
    app.state.sessions = get_sessionmaker(settings.resolved_database_url)
    app.state.store = object_store_from_settings(settings)
    app.state.temporal = TemporalConnection(settings)
    app.state.login_throttle = LoginThrottle(settings.login_failures_per_minute)
    app.state.knowledge_indexes = IndexCache(app.state.store)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each invalid value back (`input`), a password included: say where and why only
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    app.exception_handler(DomainError)(domain_error_response)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    check_every_route_is_authorized([route for router in ROUTERS for route in router.routes] + list(app.routes))
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    # The web console: public static files, outside the OpenAPI schema; its pages call the API with the user's own
    # tokens.
    app.add_route("/", console_page, include_in_schema=False)
    app.mount("/console", StaticFiles(directory=console.STATIC), name="console")
    # added innermost first: the body limit and the NUL check answer before the audit log or any route sees the request
    app.add_middleware(AuditLog, sessions=app.state.sessions)
    app.add_middleware(RejectNul)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(SecurityHeaders)  # every answer carries them, refusals included
    # /metrics (with the tasks by status), the request metrics outermost (every answer counted, refusals included),
    # and a span per request (the parent of the workflows a request starts)
    instrument_app(app, "api", refresh=lambda: refresh_task_counts(app.state.sessions))
    return app


def refresh_task_counts(sessions: sessionmaker[Session]) -> None:
    """The tasks-by-status gauge, read from the database at each scrape."""
    with sessions() as session:
        set_task_counts(count_by_status(session))


async def console_page(_: Request) -> FileResponse:
    return FileResponse(console.INDEX)
