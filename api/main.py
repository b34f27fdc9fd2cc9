"""The FastAPI application factory."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api.errors import ApiError, Unavailable
from api.routes import datasets, tasks
from core.settings import Settings, get_settings
from db.session import get_sessionmaker, migrate
from storage.object_store import object_store_from_settings


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
    migrate(settings.resolved_database_url)
    app = FastAPI(title="WLOps", version="0.1.0", description="Durable fine-tuning runs of small language models on Temporal.")
    app.state.settings = settings
    app.state.sessions = get_sessionmaker(settings.resolved_database_url)
    app.state.store = object_store_from_settings(settings)
    app.state.temporal = TemporalConnection(settings)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(datasets.router)
    app.include_router(tasks.router)
    return app
