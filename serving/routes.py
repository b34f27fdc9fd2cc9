"""The serving process's routes: health, the model list and chat completions (plain, or streamed as server-sent events).
Thin: each authenticates, calls the completion service (`serving.completions`) and renders OpenAI's wire format."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Receive, Scope, Send

from auth.callers import Caller, authenticate
from core import errors
from core.access import Scope as AccessScope
from serving.completions import Completion, CompletionService
from serving.engines import Engines
from serving.errors import ERROR_RESPONSES, error_body
from serving.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    Health,
    ModelList,
)

router = APIRouter()
bearer = HTTPBearer(auto_error=False)


def inference_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller behind the bearer token or API key, who must hold the `inference` scope."""
    if credentials is None or not credentials.credentials:
        raise errors.Unauthenticated("authentication required: send `Authorization: Bearer <access token or API key>`")
    with request.app.state.sessions() as session:
        caller: Caller = authenticate(session, request.app.state.settings, credentials.credentials)
        return caller.require(AccessScope.INFERENCE)


def completion_service(request: Request) -> CompletionService:
    service: CompletionService = request.app.state.completions
    return service


def engines_of(request: Request) -> Engines:
    engines: Engines = request.app.state.engines
    return engines


Inference = Annotated[Caller, Depends(inference_caller)]
Completions = Annotated[CompletionService, Depends(completion_service)]
EnginesDep = Annotated[Engines, Depends(engines_of)]


@router.get("/healthz", response_model=Health)
def healthz(engines: EnginesDep) -> Health:
    """Alive; and each model this process was asked to load: loading, ready, or failed (with its error and next try)."""
    states = engines.states()
    return Health(status="degraded" if any(s["state"] == "failed" for s in states.values()) else "ok", models=states)


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "A model to warm is not ready yet"}},
)
def readyz(request: Request, engines: EnginesDep) -> JSONResponse:
    """Ready once every base model of `WLOPS_SERVE_WARM_MODELS` is loaded (always, with none to warm)."""
    states = engines.states()
    warm = request.app.state.settings.serve_warm_models
    ready = all(states.get(name, {}).get("state") == "ready" for name in warm)
    body = Health(status="ready" if ready else "not_ready", models=states)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())


@router.get("/v1/models", response_model=ModelList, responses={k: ERROR_RESPONSES[k] for k in (401, 403)})
def list_models(caller: Inference, completions: Completions) -> ModelList:
    """Every registered model of the caller's organization, by name and by each alias, and the base models."""
    return completions.models(caller)


@router.post(
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
async def chat_completions(
    request: Request, caller: Inference, body: ChatCompletionRequest, completions: Completions
) -> ChatCompletion | StreamingResponse | Response:
    completion = await completions.start(caller, body)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return CompletionStream(completion, server_sent_events(completion, include_usage))
    answer = await answer_unless_the_client_leaves(request, completion)
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # no one reads it
    return ChatCompletion(
        id=completion.id,
        created=completion.created,
        model=completion.model,
        conversation_id=completion.conversation_id,
        sources=completion.sources,
        choices=[Choice(message=AssistantMessage(content=answer), finish_reason=completion.finish_reason or "stop")],
        usage=completion.usage(),
    )


# nginx's status for a request whose client closed the connection before the answer
CLIENT_CLOSED_REQUEST = 499
DISCONNECT_CHECK_SECONDS = 0.25


async def answer_unless_the_client_leaves(request: Request, completion: Completion) -> str | None:
    """The whole answer; None if the client disconnects first, in which case the completion ends as cancelled and the
    engine stops generating for it (a plain request has no stream to notice that by, so the connection is watched)."""
    answering = asyncio.ensure_future(completion.text())
    while not answering.done():
        await asyncio.wait({answering}, timeout=DISCONNECT_CHECK_SECONDS)
        if not answering.done() and await request.is_disconnected():
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering  # text() ends the completion as cancelled on its way out
            return None
    return answering.result()


class CompletionStream(StreamingResponse):
    """A completion's events. However the stream ends, the completion is recorded once it does: a client that leaves
    mid-answer (its task is cancelled, or the stream is left unfinished) ends it as cancelled."""

    def __init__(self, completion: Completion, events: AsyncIterator[str]):
        super().__init__(events, media_type="text/event-stream")
        self.completion = completion

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.completion.end()


async def server_sent_events(completion: Completion, include_usage: bool) -> AsyncIterator[str]:
    """OpenAI's chat.completion.chunk events: the role (with WLOps' conversation id and sources), each piece of the
    answer, the finish reason, the usage if asked, then [DONE]; a generation that fails sends an error event."""
    head: dict[str, Any] = {
        "id": completion.id,
        "object": "chat.completion.chunk",
        "created": completion.created,
        "model": completion.model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return event({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    sources = [s.model_dump() for s in completion.sources]
    yield chunk({"role": "assistant", "content": ""}, conversation_id=completion.conversation_id, sources=sources)
    try:
        async for text in completion.tokens():
            yield chunk({"content": text})
    except errors.Unavailable as failed:
        yield event(error_body(failed.message).model_dump())
        return
    yield chunk({}, completion.finish_reason)
    if include_usage:
        yield event({**head, "choices": [], "usage": completion.usage().model_dump()})
    yield "data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
