"""Releases for the tests and benchmarks: start one through the service as the API does, and clients that keep asking
an alias (each request in a new conversation, so a release's split spreads them) until stopped."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from temporalio.client import Client, WorkflowHandle

from activities.context import ActivityContext
from db.models import RegisteredModel
from ml.release import Thresholds
from services import releases
from services.registry import Actor
from temporal_client.workflows import ReleaseWorkflow


async def start_release(
    client: Client,
    ctx: ActivityContext,
    model: RegisteredModel,
    *,
    steps: list[int],
    thresholds: Thresholds,
    actor: Actor,
    candidate: int = 2,
    alias: str = "production",
) -> tuple[str, WorkflowHandle]:
    """A release of `alias` to version `candidate`, started; its id and its workflow's handle."""

    async def temporal() -> Client:
        return client

    with ctx.sessions() as session:
        release = await releases.start_release(
            session,
            temporal,
            session.get_one(RegisteredModel, model.id),
            candidate,
            alias=alias,
            steps=steps,
            thresholds=thresholds,
            actor=actor,
        )
    handle = client.get_workflow_handle_for(ReleaseWorkflow.run, releases.release_workflow_id(release.id))
    return release.id, handle


class Traffic:
    """Two clients asking `model` the `questions` in turn, each request in a new conversation, until stopped; each
    answer's version by conversation; `after(conversation, version)` is called for each answer."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        model: str = "bot",
        questions: tuple[str, ...] = ("Which port?",),
        max_tokens: int = 2,
        timeout: float = 60,
        after: Callable[[str, str], None] | None = None,
    ):
        self.base_url, self.token, self.model, self.questions = base_url, token, model, questions
        self.max_tokens, self.timeout, self.after = max_tokens, timeout, after
        self.stop = threading.Event()
        self.answered: list[tuple[str, int, str]] = []  # (conversation, status code, version that answered)
        self.threads = [threading.Thread(target=self._ask, args=(n,), daemon=True) for n in range(2)]

    def _ask(self, client_number: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout) as c:
            for i in itertools.count():
                if self.stop.is_set():
                    return
                conversation = f"conv-{client_number}-{i}"
                response = c.post(
                    "/chat/completions",
                    json={
                        "model": self.model,
                        "messages": [
                            {"role": "user", "content": self.questions[(2 * i + client_number) % len(self.questions)]}
                        ],
                        "max_tokens": self.max_tokens,
                        "temperature": 0,
                        "conversation_id": conversation,
                    },
                )
                version = response.json().get("model", "") if response.status_code == 200 else ""
                self.answered.append((conversation, response.status_code, version))
                if self.after is not None and version:
                    self.after(conversation, version)


@contextmanager
def traffic(base_url: str, token: str, **options) -> Iterator[Traffic]:
    """`Traffic` for the block (its options as keywords); the clients stop and are joined at its end."""
    generator = Traffic(base_url, token, **options)
    for thread in generator.threads:
        thread.start()
    try:
        yield generator
    finally:
        generator.stop.set()
        for thread in generator.threads:
            thread.join(timeout=60)
