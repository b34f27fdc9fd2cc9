"""The OpenAI-compatible server (`wlops serve`): `GET /v1/models` and `POST /v1/chat/completions` (plain and streamed
as server-sent events) for the caller's organization's registered models and the base models they are built on.

- `model` is `name` (its `production` alias), `name@staging`, `name@3` or a base model; it is resolved on every
  request, so an alias move takes effect at the next request, without a restart, and a request already running
  finishes on the version it started with (the engine keeps a version's adapter while a request uses it). The
  response's `model` names the exact version that answered (`name@3`).
- With a knowledge base (`knowledge_base_id`, or the version's own when it serves with retrieval), the last user
  message is asked with the top-k passages, as the version was trained, and the response carries its `sources`.
- Every completion is recorded in the question-answering history (`services.qa`).
- The same bearer tokens and API keys as the API, with the scope `inference`; errors use OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from auth.callers import Caller, authenticate
from core import errors
from core.access import Scope
from core.model_loading import SHARED, ModelLoadFailed, SharedModels
from core.settings import Settings, get_settings
from db.models import ModelVersion, RegisteredModel
from db.session import get_sessionmaker
from ml.base_model import KNOWN_MODELS, load_model_and_tokenizer
from ml.chat import RAG_SYSTEM_PROMPT, SYSTEM_PROMPT, user_turn
from observability import metrics
from services import knowledge, qa, registry
from serving.engine import AdapterEngine, AdapterRef, Event, GenerationRequest, SamplingParams
from serving.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ErrorBody,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    Source,
    Usage,
)
from storage.object_store import get_dir, object_store_from_settings

logger = logging.getLogger(__name__)

# OpenAI's error types for each domain error (the most specific class wins)
ERRORS: dict[type[errors.DomainError], tuple[int, str]] = {
    errors.Invalid: (400, "invalid_request_error"),
    errors.Unauthenticated: (401, "authentication_error"),
    errors.Forbidden: (403, "permission_error"),
    errors.NotFound: (404, "not_found_error"),
    errors.Conflict: (409, "invalid_request_error"),
    errors.TooLarge: (413, "invalid_request_error"),
    errors.RateLimited: (429, "rate_limit_error"),
    errors.Unavailable: (503, "service_unavailable"),
}
bearer = HTTPBearer(auto_error=False)
ERROR_RESPONSES = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid parameters (`param` names the field), or a prompt over the context limit (`context_length_exceeded`)",
        401: "Missing, invalid, expired or revoked credentials",
        403: "The credentials lack the `inference` scope",
        404: "No such model (or version, or alias) in your organization",
        503: "The generation failed",
    }.items()
}


def inference_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller behind the bearer token or API key, who must hold the `inference` scope."""
    if credentials is None or not credentials.credentials:
        raise errors.Unauthenticated("authentication required: send `Authorization: Bearer <access token or API key>`")
    with request.app.state.sessions() as session:
        return authenticate(session, request.app.state.settings, credentials.credentials).require(Scope.INFERENCE)


Inference = Annotated[Caller, Depends(inference_caller)]


def error_response(
    status: int, kind: str, message: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(
        status_code=status, content=body.model_dump(), headers={"WWW-Authenticate": "Bearer"} if status == 401 else None
    )


class Engines:
    """One engine per base model, its model loaded on first use (a request that needs it waits for the load), once per
    process, under the process's one model-loading lock; a failed load answers 503 with its error until its backoff has
    passed, then the next request tries again (`core.model_loading`)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.models = SharedModels()

    def get(self, base_model: str) -> AdapterEngine:
        return self.models.get(base_model, lambda: self._start(base_model))

    def _start(self, base_model: str) -> AdapterEngine:
        model, tokenizer = load_model_and_tokenizer(base_model, self.settings.model_cache_dir)
        return AdapterEngine(
            model,
            tokenizer,
            max_adapters=self.settings.serve_max_adapters,
            max_batch=self.settings.serve_max_batch,
            batch_window=self.settings.serve_batch_window_ms / 1000,
        )

    def warm(self, base_models: list[str], stopping: threading.Event) -> None:
        """Load each base model now (the process's start), trying a failed one again after its backoff until it loads."""
        for name in base_models:
            while not stopping.is_set():
                try:
                    self.get(name)
                    break
                except ModelLoadFailed as exc:
                    logger.warning("warming %s: %s", name, exc.message)
                    stopping.wait(self.models.retry_in(name))

    def states(self) -> dict[str, dict]:
        """Each base model asked for, and the embedding model when retrieval has needed it: loading, ready or failed."""
        return {**self.models.states(), **SHARED.states()}

    def close(self) -> None:
        for _, engine in self.models.items():
            engine.close()


class Target:
    """What a `model` reference names: the exact version (or a base model), and its base model."""

    def __init__(self, label: str, base_model: str, version: ModelVersion | None = None):
        self.label, self.base_model, self.version = label, base_model, version


def resolve_target(session, org_id: str, reference: str) -> Target:
    name = reference.partition("@")[0]
    registered = session.scalar(
        select(RegisteredModel).where(RegisteredModel.org_id == org_id, RegisteredModel.name == name)
    )
    if registered is not None or "@" in reference:
        model, version = registry.resolve(session, org_id, reference)
        return Target(f"{model.name}@{version.version}", model.base_model, version)
    bases = set(KNOWN_MODELS) | set(
        session.scalars(select(RegisteredModel.base_model).where(RegisteredModel.org_id == org_id))
    )
    if reference in bases:
        return Target(reference, reference)
    raise errors.NotFound(f"The model `{reference}` does not exist or you do not have access to it.")


def create_serving_app(settings: Settings | None = None, engines: Engines | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_secret()
    engines = engines or Engines(settings)

    stopping = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
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
    indexes = knowledge.IndexCache(store)
    app.state.settings, app.state.sessions = settings, sessions
    app.state.engines = engines
    adapter_dir = settings.data_dir / "serving" / "adapters"

    @app.exception_handler(errors.DomainError)
    async def domain_error(_: Request, error: errors.DomainError) -> JSONResponse:
        status, kind = next(ERRORS[k] for k in type(error).__mro__ if k in ERRORS)
        return error_response(status, kind, error.message, error.param, error.code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own refusals (a body that cannot be parsed, an unknown path or method), in OpenAI's shape too."""
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
            exc.status_code, "invalid_request_error"
        )
        return error_response(exc.status_code, kind, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        messages = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors())
        return error_response(400, "invalid_request_error", messages, param)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        """Alive; and each model this process was asked to load: loading, ready, or failed (with its error and next try)."""
        states = engines.states()
        return Health(
            status="degraded" if any(s["state"] == "failed" for s in states.values()) else "ok", models=states
        )

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "A model to warm is not ready yet"}},
    )
    def readyz() -> JSONResponse:
        """Ready once every base model of `WLOPS_SERVE_WARM_MODELS` is loaded (always, with none to warm)."""
        states = engines.states()
        ready = all(states.get(name, {}).get("state") == "ready" for name in settings.serve_warm_models)
        body = Health(status="ready" if ready else "not_ready", models=states)
        return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {}},
                "description": (
                    "Prometheus metrics: requests by route and status, latencies, completions, generated tokens and time to the first token by model. "
                    "Unauthenticated: keep the port on the internal network."
                ),
            }
        },
    )
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get(
        "/v1/models", response_model=ModelList, responses={k: v for k, v in ERROR_RESPONSES.items() if k in (401, 403)}
    )
    def list_models(caller: Inference) -> ModelList:
        with sessions() as session:
            models, _ = registry.list_models(session, caller.org_id, limit=10_000, offset=0)
            cards = []
            for model in models:
                created = int(model.created_at.timestamp())
                cards.append(ModelCard(id=model.name, created=created, owned_by=caller.org_id))
                cards += [
                    ModelCard(id=f"{model.name}@{alias}", created=created, owned_by=caller.org_id)
                    for alias in registry.aliases_of(session, model)
                ]
            bases = sorted(set(KNOWN_MODELS) | {m.base_model for m in models})
        return ModelList(data=cards + [ModelCard(id=base, created=0, owned_by="wlops") for base in bases])

    def local_adapter(version: ModelVersion) -> AdapterRef:
        """The version's adapter folder on this machine (fetched once; a version never changes)."""
        folder = adapter_dir / version.id
        if not folder.exists():
            partial = adapter_dir / f".{version.id}.{uuid.uuid4().hex}"
            get_dir(store, version.adapter_key, partial)
            try:
                partial.rename(folder)
            except OSError:  # another request fetched it first
                pass
        return AdapterRef(version.id, folder)

    def prepare(
        caller: Caller, body: ChatCompletionRequest
    ) -> tuple[Target, list[dict], list[Source], str | None, AdapterRef | None]:
        """Resolve the model, retrieve passages, build the messages to ask: everything that needs the database."""
        with sessions() as session:
            target = resolve_target(session, caller.org_id, body.model)
            version = target.version
            kb_id = body.knowledge_base_id or (
                version.knowledge_base_id if version is not None and version.serving_mode == "rag" else None
            )
            messages = [m.model_dump() for m in body.messages]
            sources: list[Source] = []
            if not any(m["role"] == "user" for m in messages):
                raise errors.Invalid("messages: at least one message must have the role `user`")
            if kb_id:
                kb = knowledge.get_knowledge_base(session, caller.org_id, kb_id)
                last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
                top_k = (
                    version.retrieval_top_k if version is not None and version.retrieval_top_k else None
                ) or settings.serve_retrieval_top_k
                hits = knowledge.search(session, indexes, kb, messages[last_user]["content"], top_k)
                messages[last_user] = {
                    "role": "user",
                    "content": user_turn(messages[last_user]["content"], [h.chunk.text for h in hits]),
                }
                sources = [
                    Source(
                        document_id=h.chunk.document_id,
                        filename=h.chunk.filename,
                        heading=" > ".join(h.chunk.heading_path),
                        chunk_id=h.chunk.chunk_id,
                        score=round(float(h.score), 4),
                    )
                    for h in hits
                ]
            if messages[0]["role"] != "system":
                messages.insert(0, {"role": "system", "content": RAG_SYSTEM_PROMPT if kb_id else SYSTEM_PROMPT})
        adapter = local_adapter(version) if version is not None else None
        return target, messages, sources, kb_id, adapter

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "With `stream`: chat.completion.chunk events, then [DONE]",
            },
            **ERROR_RESPONSES,
        },
    )
    async def chat_completions(caller: Inference, body: ChatCompletionRequest):
        started = time.perf_counter()
        max_tokens = (
            body.max_completion_tokens
            or body.max_tokens
            or min(settings.serve_default_max_tokens, settings.serve_max_tokens)
        )
        if max_tokens > settings.serve_max_tokens:
            raise errors.Invalid(
                f"max_tokens: at most {settings.serve_max_tokens}, got {max_tokens}", param="max_tokens"
            )
        target, messages, sources, kb_id, adapter = await run_in_threadpool(prepare, caller, body)
        engine = await run_in_threadpool(engines.get, target.base_model)
        prompt = list(
            engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
                "input_ids"
            ]
        )
        if len(prompt) + max_tokens > engine.context_limit:
            raise errors.Invalid(
                f"This model's maximum context length is {engine.context_limit} tokens; the messages take {len(prompt)} "
                f"and max_tokens asks for {max_tokens} more.",
                param="messages",
                code="context_length_exceeded",
            )
        request = GenerationRequest(
            prompt,
            SamplingParams(
                max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stops()
            ),
            adapter,
            asyncio.get_running_loop(),
        )
        engine.submit(request)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        conversation_id = body.conversation_id or uuid.uuid4().hex

        model_label, first_token_seen = target.label.split("@")[0], []

        def first_token() -> None:
            if not first_token_seen:
                first_token_seen.append(True)
                metrics.SERVING_FIRST_TOKEN.labels(model_label).observe(time.perf_counter() - started)

        def remember(answer: str, finish: str, completion_tokens: int) -> None:
            metrics.SERVING_COMPLETIONS.labels(model_label, finish).inc()
            metrics.SERVING_TOKENS.labels(model_label).inc(completion_tokens)
            metrics.SERVING_LATENCY.labels(model_label).observe(time.perf_counter() - started)
            with sessions() as session:
                qa.record(
                    session,
                    org_id=caller.org_id,
                    user_id=caller.user_id,
                    api_key_id=caller.api_key_id,
                    conversation_id=conversation_id,
                    model=target.label,
                    model_version_id=target.version.id if target.version else None,
                    messages=[m.model_dump() for m in body.messages],
                    answer=answer,
                    finish_reason=finish,
                    knowledge_base_id=kb_id,
                    sources=[s.model_dump() for s in sources],
                    prompt_tokens=len(prompt),
                    completion_tokens=completion_tokens,
                    latency_ms=int((time.perf_counter() - started) * 1000),
                )

        if not body.stream:
            answer = ""
            while (event := await request.events.get()).kind == "delta":
                first_token()
                answer += event.text
            done = _finished(event)
            await run_in_threadpool(remember, answer, done.finish_reason, done.completion_tokens)
            return ChatCompletion(
                id=completion_id,
                created=created,
                model=target.label,
                conversation_id=conversation_id,
                sources=sources,
                choices=[Choice(message=AssistantMessage(content=answer), finish_reason=done.finish_reason)],
                usage=Usage(
                    prompt_tokens=len(prompt),
                    completion_tokens=done.completion_tokens,
                    total_tokens=len(prompt) + done.completion_tokens,
                ),
            )

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": target.label,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk(
                {"role": "assistant", "content": ""},
                conversation_id=conversation_id,
                sources=[s.model_dump() for s in sources],
            )
            answer = ""
            while (event := await request.events.get()).kind == "delta":
                first_token()
                answer += event.text
                yield chunk({"content": event.text})
            if event.kind == "error":
                yield f"data: {json.dumps(ErrorResponse(error=ErrorBody(message=event.text, type='server_error')).model_dump())}\n\n"
                return
            yield chunk({}, event.finish_reason)
            if body.stream_options and body.stream_options.include_usage:
                usage = Usage(
                    prompt_tokens=len(prompt),
                    completion_tokens=event.completion_tokens,
                    total_tokens=len(prompt) + event.completion_tokens,
                )
                yield f"data: {json.dumps({'id': completion_id, 'object': 'chat.completion.chunk', 'created': created, 'model': target.label, 'choices': [], 'usage': usage.model_dump()})}\n\n"
            yield "data: [DONE]\n\n"
            await run_in_threadpool(remember, answer, event.finish_reason, event.completion_tokens)

        return StreamingResponse(events(), media_type="text/event-stream")

    app.add_middleware(metrics.HttpMetrics, service="serve")
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    return app


def _finished(event: Event) -> Event:
    if event.kind == "error":
        raise errors.Unavailable(event.text)
    return event
