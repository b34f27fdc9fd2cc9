"""OpenAI's chat-completions wire format: the request the server accepts and the responses and chunks it sends, plus
WLOps' extension fields (`knowledge_base_id`, `conversation_id` in; `sources`, `conversation_id` out)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)

    @field_validator("content")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields WLOps honours; an unknown field is an error, so a caller never believes an option took effect."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1,
        max_length=200,
        description="`name` (its production alias), `name@alias`, `name@3`, or a base model.",
    )
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    user: str | None = Field(default=None, max_length=200)
    # WLOps extensions
    knowledge_base_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "Answer with passages retrieved from this knowledge base (default: the version's own, when it serves "
            "with retrieval)."
        ),
    )
    conversation_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4 or any(not s or len(s) > 100 for s in stops):
            raise ValueError("at most 4 stop sequences of 1 to 100 characters")
        return value

    def stops(self) -> tuple[str, ...]:
        return tuple([self.stop] if isinstance(self.stop, str) else (self.stop or []))


class Source(BaseModel):
    document_id: str
    filename: str | None = None
    heading: str
    chunk_id: str
    score: float


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str  # the exact version that answered
    choices: list[Choice]
    usage: Usage
    conversation_id: str
    sources: list[Source] = Field(default_factory=list)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelState(BaseModel):
    """One model the process was asked to load."""

    state: Literal["loading", "ready", "failed"]
    load_seconds: float | None = None
    error: str | None = None  # why the last load failed
    failures: int | None = None
    retry_in_seconds: float | None = None  # when the next request (or the warming) tries it again


class Health(BaseModel):
    """The process, and each model it was asked to load (base models by name, the embedding model as
    `embeddings:<name>`)."""

    status: Literal["ok", "degraded", "ready", "not_ready"]
    models: dict[str, ModelState]
