"""Chat completions, from a request to its record: resolve the model through the registry (split by the release running
on its alias, `services.releases.route`), fetch the version's adapter,
retrieve passages from its knowledge base, ask the engine, and record every completion in the question-answering
history (`services.qa`) however it ends: completed, failed (the engine failed, or the request was refused once its
model was known) or cancelled (the client left mid-answer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from auth.callers import Caller
from core import errors
from core.settings import Settings
from db.models import ModelVersion
from ml.chat import RAG_SYSTEM_PROMPT, SYSTEM_PROMPT, user_turn
from ml.focused_context import focus_passages
from observability import metrics
from services import knowledge, qa, registry, releases
from services.qa import CompletionStatus
from serving.engine import AdapterRef, GenerationRequest, SamplingParams
from serving.engines import Engines
from serving.protocol import ChatCompletionRequest, ModelCard, ModelList, Source, Usage
from storage.checksums import ChecksumMismatch, verify_folder
from storage.object_store import ObjectStore, get_dir

log = logging.getLogger(__name__)


@dataclass
class Completion:
    """One completion underway: what it runs on, its answer as it comes, and its one record in the history (`end`)."""

    service: CompletionService
    caller: Caller
    body: ChatCompletionRequest
    served: registry.Served
    started: float = field(default_factory=time.perf_counter)
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    knowledge_base_id: str | None = None
    sources: list[Source] = field(default_factory=list)
    prompt_tokens: int = 0
    answer: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    status: CompletionStatus | None = None  # None until it has ended and been recorded
    request: GenerationRequest | None = None  # what the engine works on, once submitted
    release_id: str | None = None  # the release whose split chose the version, and its arm (current | candidate)
    release_arm: str | None = None
    conversation_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.conversation_id = self.body.conversation_id or uuid.uuid4().hex

    @property
    def model(self) -> str:
        """The exact version that answers (name@3), or the base model."""
        return self.served.label

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
        )

    async def tokens(self) -> AsyncIterator[str]:
        """The answer's text as the engine makes it; recorded as completed at its end, or as failed (raising
        Unavailable) if the generation fails. A caller that stops listening calls `end()`: it is then cancelled."""
        assert self.request is not None, "submitted by CompletionService.start"
        while (event := await self.request.events.get()).kind == "delta":
            if not self.answer:
                metrics.SERVING_FIRST_TOKEN.labels(self.metric_label).observe(time.perf_counter() - self.started)
            self.answer += event.text
            self.completion_tokens = event.completion_tokens
            yield event.text
        self.completion_tokens = event.completion_tokens
        if event.kind == "error":
            await self.end(CompletionStatus.FAILED, event.text)
            raise errors.Unavailable(event.text)
        self.finish_reason = event.finish_reason
        await self.end(CompletionStatus.COMPLETED)

    async def text(self) -> str:
        """The whole answer (recorded however it ends)."""
        try:
            return "".join([piece async for piece in self.tokens()])
        finally:
            await self.end()

    async def end(self, status: CompletionStatus = CompletionStatus.CANCELLED, error: str | None = None) -> None:
        """Record the completion once (later calls do nothing); ending it before its answer is finished cancels it,
        and the engine stops generating for it. Runs to the end even while its task is being cancelled."""
        if self.status is not None:
            return
        self.status = status
        with anyio.CancelScope(shield=True):  # a client that left cancels the request's task: record it all the same
            if status == CompletionStatus.CANCELLED and self.request is not None:
                self.request.cancel()
                await self._stopped()
            await to_thread.run_sync(self.service.record, self, status, error)

    async def _stopped(self, timeout: float = 10.0) -> None:
        """Wait (a few decode steps) for the engine to let a cancelled request's row go, to record every token it made;
        past `timeout`, the tokens streamed so far are recorded."""
        assert self.request is not None
        with anyio.move_on_after(timeout):
            while (event := await self.request.events.get()).kind == "delta":
                self.completion_tokens = event.completion_tokens
            self.completion_tokens = max(self.completion_tokens, event.completion_tokens)

    @property
    def metric_label(self) -> str:
        return self.served.label.split("@")[0]  # by registered model, not by version: a series per model


class CompletionService:
    """Starts completions for callers and records each one (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        store: ObjectStore,
        engines: Engines,
        indexes: knowledge.IndexCache,
    ):
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.engines = engines
        self.indexes = indexes  # the knowledge bases' indexes, loaded once per version
        self.adapter_dir = settings.data_dir / "serving" / "adapters"
        self.verified_adapters: set[str] = set()  # version ids whose local copy matched its checksum
        self.adapter_locks: dict[str, threading.Lock] = {}  # per version id: its fetch and check

    def models(self, caller: Caller) -> ModelList:
        """What the caller may ask for: each registered model of its organization, by name and by each of its aliases,
        and the base models."""
        with self.sessions() as session:
            models, _ = registry.list_models(session, caller.org_id, limit=10_000, offset=0)
            cards = []
            for model in models:
                created = int(model.created_at.timestamp())
                names = [model.name] + [f"{model.name}@{alias}" for alias in registry.aliases_of(session, model)]
                cards += [ModelCard(id=name, created=created, owned_by=caller.org_id) for name in names]
            bases = registry.base_models(session, caller.org_id)
        return ModelList(data=cards + [ModelCard(id=base, created=0, owned_by="wlops") for base in bases])

    async def start(self, caller: Caller, body: ChatCompletionRequest) -> Completion:
        """A completion submitted to the engine. A model that cannot be resolved is refused unrecorded; anything refused
        after that is recorded as failed, with its error, and raised."""
        started = time.perf_counter()
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        # a conversation stays on one side of a release's split; a request without one is split on its own id
        routed = await to_thread.run_sync(self._resolve, caller, body.model, body.conversation_id or completion_id)
        completion = Completion(
            self,
            caller,
            body,
            routed.served,
            started=started,
            id=completion_id,
            release_id=routed.release_id,
            release_arm=routed.arm,
        )
        try:
            await self._submit(completion)
        except BaseException as exc:
            await completion.end(
                CompletionStatus.FAILED if isinstance(exc, Exception) else CompletionStatus.CANCELLED,
                exc.message if isinstance(exc, errors.DomainError) else str(exc) or type(exc).__name__,
            )
            raise
        return completion

    def _resolve(self, caller: Caller, reference: str, sticky_key: str) -> releases.Routed:
        with self.sessions() as session:
            return releases.route(session, caller.org_id, reference, sticky_key)

    async def _submit(self, completion: Completion) -> None:
        body, settings = completion.body, self.settings
        max_tokens = (
            body.max_completion_tokens
            or body.max_tokens
            or min(settings.serve_default_max_tokens, settings.serve_max_tokens)
        )
        if max_tokens > settings.serve_max_tokens:
            raise errors.Invalid(
                f"max_tokens: at most {settings.serve_max_tokens}, got {max_tokens}", param="max_tokens"
            )
        messages = await to_thread.run_sync(self._messages, completion)
        version = completion.served.version
        adapter = await to_thread.run_sync(self._adapter, version) if version else None
        engine = await to_thread.run_sync(self.engines.get, completion.served.base_model)
        chat = engine.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        prompt = list(chat["input_ids"])
        completion.prompt_tokens = len(prompt)
        if len(prompt) + max_tokens > engine.context_limit:
            raise errors.Invalid(
                f"This model's maximum context length is {engine.context_limit} tokens; the messages take "
                f"{len(prompt)} and max_tokens asks for {max_tokens} more.",
                param="messages",
                code="context_length_exceeded",
            )
        params = SamplingParams(
            max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stops()
        )
        completion.request = GenerationRequest(prompt, params, adapter, asyncio.get_running_loop())
        engine.submit(completion.request)

    def _messages(self, completion: Completion) -> list[dict[str, Any]]:
        """The messages to ask: the caller's, the last user message with the passages retrieved for it (from the
        request's knowledge base, or the version's own when it serves with retrieval), and the system prompt."""
        body, version = completion.body, completion.served.version
        messages = [m.model_dump() for m in body.messages]
        if not any(m["role"] == "user" for m in messages):
            raise errors.Invalid("messages: at least one message must have the role `user`")
        kb_id = body.knowledge_base_id or (
            version.knowledge_base_id if version is not None and version.serving_mode == "rag" else None
        )
        completion.knowledge_base_id = kb_id
        if kb_id:
            from knowledge.embeddings import embed

            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            question = messages[last_user]["content"]
            top_k = (version.retrieval_top_k if version is not None else None) or self.settings.serve_retrieval_top_k
            question_vector = embed([question])  # embedded once: to retrieve, and to cut the passages
            with self.sessions() as session:
                kb = knowledge.get_knowledge_base(session, completion.caller.org_id, kb_id)
                hits = knowledge.search(session, self.indexes, kb, question, top_k, query_vector=question_vector)
            passages = [h.chunk.text for h in hits]
            statements = version.context_statements if version is not None else None
            if statements and passages:  # asked as the version was trained: its passages cut the same way
                [passages] = focus_passages([question], [passages], embed, statements, question_vector)
            messages[last_user] = {"role": "user", "content": user_turn(question, passages)}
            completion.sources = [
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
        return messages

    def _adapter(self, version: ModelVersion) -> AdapterRef:
        """The version's adapter folder on this machine, fetched once (a version never changes) and held to the sha256
        recorded when it was registered before this process first serves it: a mismatch is Corrupted, and the copy is
        thrown away so a repaired adapter can be fetched again."""
        folder = self.adapter_dir / version.id
        if version.id in self.verified_adapters and folder.exists():
            return AdapterRef(version.id, folder)
        # one fetch and check per version at a time: a request must never hash a copy that another is throwing away
        with self.adapter_locks.setdefault(version.id, threading.Lock()):
            return self._fetch_and_verify(version, folder)

    def _fetch_and_verify(self, version: ModelVersion, folder: Path, retry: bool = True) -> AdapterRef:
        if version.id in self.verified_adapters and folder.exists():  # another request did it while this one waited
            return AdapterRef(version.id, folder)
        if not folder.exists():
            partial = self.adapter_dir / f".{version.id}.{uuid.uuid4().hex}"
            get_dir(self.store, version.adapter_key, partial)
            with contextlib.suppress(OSError):  # another request fetched it first
                partial.rename(folder)
            shutil.rmtree(partial, ignore_errors=True)
        what = f"the adapter of {version.id}"
        try:
            verify_folder(folder, version.sha256, what)
        except FileNotFoundError:  # another serving process on this data folder threw its copy away: fetch again
            if not retry:
                raise
            return self._fetch_and_verify(version, folder, retry=False)
        except ChecksumMismatch as exc:
            shutil.rmtree(folder, ignore_errors=True)
            log.error("refused to serve a corrupted adapter: %s", exc)
            raise errors.Corrupted(f"{exc}; it is not served") from exc
        self.verified_adapters.add(version.id)
        return AdapterRef(version.id, folder)

    def record(self, completion: Completion, status: CompletionStatus, error: str | None) -> None:
        """The completion's metrics and its entry in the history."""
        seconds = time.perf_counter() - completion.started
        label = completion.metric_label
        metrics.SERVING_COMPLETIONS.labels(label, completion.finish_reason or status.value).inc()
        metrics.SERVING_TOKENS.labels(label).inc(completion.completion_tokens)
        metrics.SERVING_LATENCY.labels(label).observe(seconds)
        caller, version = completion.caller, completion.served.version
        with self.sessions() as session:
            qa.record(
                session,
                org_id=caller.org_id,
                user_id=caller.user_id,
                api_key_id=caller.api_key_id,
                conversation_id=completion.conversation_id,
                model=completion.model,
                model_version_id=version.id if version else None,
                messages=[m.model_dump() for m in completion.body.messages],
                status=status.value,
                answer=completion.answer,
                finish_reason=completion.finish_reason,
                error=error,
                knowledge_base_id=completion.knowledge_base_id,
                sources=[s.model_dump() for s in completion.sources],
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                latency_ms=int(seconds * 1000),
                release_id=completion.release_id,
                release_arm=completion.release_arm,
            )
