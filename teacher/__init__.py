"""A bigger model as a teacher: any OpenAI-compatible chat-completions endpoint (`WLOPS_TEACHER_URL`,
`WLOPS_TEACHER_MODEL`, `WLOPS_TEACHER_API_KEY`) writes question/answer pairs from a knowledge base's chunks; an
organization's judge (`teacher.judge`) grades suite answers against a rubric.

It implements `ml.generation.QuestionAnswerGenerator`; what it writes goes through the same validation as every
other generator's. Its own package: it is the one place that calls out to a model over HTTP."""

from __future__ import annotations

import json
import re

import httpx

from core.settings import Settings
from knowledge.index import ChunkRecord
from ml.generation import GeneratedPair

SYSTEM = (
    "You write training data for a support assistant. From the passage, write {n} question-answer pairs that the "
    "passage "
    "answers. Each answer is one sentence that states the fact as the passage gives it. Reply with one JSON object "
    "per line, "
    'like {{"question": "...", "answer": "..."}}, and nothing else.'
)
JSON_OBJECT = re.compile(r"\{[^{}]*\}")


class TeacherError(RuntimeError):
    """The endpoint refused or failed a request (the message says how)."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


class ChatEndpoint:
    """An OpenAI-compatible chat-completions endpoint, asked greedily; `who` names it in errors."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120,
        transport: httpx.BaseTransport | None = None,
        who: str = "the teacher",
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model, self.who = model, who
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def complete(self, system: str, user: str, max_tokens: int = 512) -> str:
        """One chat completion, greedy; the text of its first choice."""
        try:
            response = self.client.post(
                "/chat/completions",
                json={
                    "model": self.model,
                    "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
                    "temperature": 0,
                    "max_tokens": max_tokens,
                    "n": 1,
                },
            )
        except httpx.HTTPError as exc:  # connection refused, timeout: worth a retry
            raise TeacherError(f"{self.who} at {self.client.base_url} did not answer: {exc}", retryable=True) from exc
        if response.status_code >= 400:
            raise TeacherError(
                f"{self.who} answered {response.status_code}: {response.text[:300]}",
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            return response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TeacherError(
                f"{self.who}'s reply is not a chat completion: {response.text[:300]}", retryable=False
            ) from exc


class TeacherGenerator(ChatEndpoint):
    """The teacher: writes question/answer pairs from chunks (`ml.generation.QuestionAnswerGenerator`)."""

    name = "teacher"

    @classmethod
    def from_settings(cls, settings: Settings) -> TeacherGenerator:
        if not settings.teacher_url or not settings.teacher_model:
            raise TeacherError(
                "no teacher is configured: set WLOPS_TEACHER_URL and WLOPS_TEACHER_MODEL", retryable=False
            )
        return cls(settings.teacher_url, settings.teacher_model, settings.teacher_api_key)

    def generate(self, chunks: list[ChunkRecord], per_chunk: int) -> list[GeneratedPair]:
        pairs: list[GeneratedPair] = []
        for chunk in chunks:
            reply = self.complete(SYSTEM.format(n=per_chunk), " > ".join(chunk.heading_path + [""]) + chunk.text)
            pairs.extend(GeneratedPair(q, a, chunk, "teacher") for q, a in parse_pairs(reply)[:per_chunk])
        return pairs


def parse_pairs(reply: str) -> list[tuple[str, str]]:
    """Every {"question": ..., "answer": ...} object in the reply (other text, and malformed objects, are skipped)."""
    pairs = []
    for match in JSON_OBJECT.finditer(reply):
        try:
            record = json.loads(match.group())
        except json.JSONDecodeError:
            continue
        question, answer = record.get("question"), record.get("answer")
        if isinstance(question, str) and isinstance(answer, str) and question.strip() and answer.strip():
            pairs.append((question.strip(), answer.strip()))
    return pairs
