"""The OpenAI-compatible server (`wlops serve`): `GET /v1/models` and `POST /v1/chat/completions` (plain and streamed
as server-sent events) for the caller's organization's registered models and the base models they are built on.

- `model` is `name` (its `production` alias), `name@staging`, `name@3` or a base model; it is resolved on every
  request (`services.registry.resolve_served`), so an alias move takes effect at the next request, without a restart,
  and a request already running finishes on the version it started with (the engine keeps a version's adapter while a
  request uses it). The response's `model` names the exact version that answered (`name@3`).
- With a knowledge base (`knowledge_base_id`, or the version's own when it serves with retrieval), the last user
  message is asked with the top-k passages, as the version was trained, and the response carries its `sources`.
- Every completion is recorded in the question-answering history (`services.qa`) with how it ended: completed, failed
  or cancelled (the client left mid-answer).
- The same bearer tokens and API keys as the API, with the scope `inference`; errors use OpenAI's error shape.

The parts: `routes.py` (thin routes, OpenAI's wire format), `completions.py` (from a request to its record),
`engines.py` and `engine.py` (the models and their batched generation), `errors.py` (OpenAI's error shape).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core.settings import Settings, get_settings
from db.session import get_sessionmaker
from observability.http import instrument_app
from services.knowledge import IndexCache
from serving.completions import CompletionService
from serving.engines import Engines
from serving.errors import install_error_handlers
from serving.routes import router
from storage.object_store import object_store_from_settings


def create_serving_app(settings: Settings | None = None, engines: Engines | None = None) -> FastAPI:
    """The serving app over an up-to-date database; its base models load on first use (or at its start:
    `serve_warm_models`)."""
    settings = settings or get_settings()
    settings.check_secret()
    engines = engines or Engines(settings)
    stopping = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.serve_warm_models:
            threading.Thread(
                target=engines.warm, args=(settings.serve_warm_models, stopping), daemon=True, name="warm-models"
            ).start()
        yield
        stopping.set()
        engines.close()

    app = FastAPI(
        title="WLOps serving",
        version="0.1.0",
        description="OpenAI-compatible chat completions for many LoRA adapters on one base.",
        lifespan=lifespan,
    )
    sessions = get_sessionmaker(settings.resolved_database_url)
    store = object_store_from_settings(settings)
    app.state.settings, app.state.sessions, app.state.engines = settings, sessions, engines
    app.state.completions = CompletionService(settings, sessions, store, engines, IndexCache(store))
    install_error_handlers(app)
    app.include_router(router)
    instrument_app(app, "serve")
    return app
