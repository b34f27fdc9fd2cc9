"""Request and response models of the HTTP API. Clients can never set server-owned fields."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasGenerator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from core.access import Role, Scope
from core.clock import as_utc
from core.status import (
    DatasetStatus,
    DatasetVersionKind,
    GateStatus,
    KnowledgeBaseStatus,
    ReleaseStatus,
    SuiteRunStatus,
    TaskMode,
    TaskStatus,
)
from schemas.workflow_io import LoraTargets

# Every timestamp a response carries: always with its UTC offset.
# (SQLite hands them back without a zone; RFC 3339, OpenAPI's `date-time`, needs the offset.)
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


# Text without NUL characters (PostgreSQL cannot store them), for form fields; JSON bodies are checked by
# `RequestModel`, paths and query strings by `api.middleware.RejectNul`.
NO_NUL = r"^[^\x00]*$"
# A registered model's name (it appears in URLs and in `model` of chat requests: `name`, `name@alias`, `name@3`) and an
# alias.
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
ALIAS_NAME = r"^[a-z][a-z0-9_-]{0,63}$"


class RequestModel(BaseModel):
    """Input: snake_case, camelCase accepted too; unknown fields are an error; no text may contain NUL."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=AliasGenerator(validation_alias=to_camel)
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class HyperparametersIn(RequestModel):
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    epochs: int | None = Field(default=None, ge=1, le=100)
    batch_size: int | None = Field(default=None, ge=1, le=512)
    lora_r: int | None = Field(default=None, ge=1, le=256)
    lora_alpha: float | None = Field(default=None, gt=0, le=1024)
    lora_dropout: float | None = Field(default=None, ge=0, lt=1)
    lora_targets: LoraTargets | None = Field(
        default=None,
        description="The layers that carry LoRA weights: the attention projections (`attention`, the default) or every "
        "linear layer of the decoder, attention and MLP (`all_linear`).",
    )
    max_seq_length: int | None = Field(default=None, ge=16, le=8192)
    max_steps: int | None = Field(default=None, ge=1, le=1_000_000)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    balance_yes_no: bool | None = Field(
        default=None,
        description='Give the yes/no training rows of the rarer answer more copies, until "Yes" and "No" are trained '
        "equally often (a row's answer is its polarity check). Off by default.",
    )


class StandardTaskCreate(RequestModel):
    task_name: str = Field(min_length=1, max_length=200)
    model_name: str = Field(default="smollm2-135m-instruct", min_length=1, max_length=500)
    dataset_id: str = Field(min_length=1, max_length=64)
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    knowledge_base_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "Train with passages from this knowledge base in the prompt (RAFT) and evaluate closed book and with "
            "retrieval; the headline is then the retrieval-augmented score. It must have an index (at least one build)."
        ),
    )
    retrieval_top_k: int = Field(default=3, ge=1, le=10, description="Passages retrieved for each question.")
    context_statements: int | None = Field(
        default=None,
        ge=1,
        le=20,
        description=(
            "Cut each prompt's passages to this many statements (list items, lines, sentences) nearest the question, "
            "ranked by the embedding model, in training, evaluation, the gate, suites and serving (the version keeps "
            "it). Shorter prompts train on more examples in the same minutes. Null: whole chunks. Needs "
            "knowledge_base_id."
        ),
    )
    retrain_on_change: bool = Field(
        default=False,
        description=(
            "Follow the knowledge base: when its documents change after this task has finished, an incremental task "
            "starts from this task's final adapter, on its splits, with the new knowledge base version (several "
            "changes within a quiet period start one). Needs knowledge_base_id."
        ),
    )
    register_as: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=MODEL_NAME,
        description=(
            "The registered model whose next version this task's final adapter becomes (default: the task name, made "
            "URL-safe)."
        ),
    )


class ContinuousTaskCreate(StandardTaskCreate):
    max_iterations: int = Field(default=3, ge=1, le=50)
    performance_threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "Stop looping once the feedback split's share of right answers (by its fact checks) reaches this. The loop "
            "decides on the feedback split only; the locked test split is only ever reported. Tasks started before "
            "this rule stopped on the test split's blended score."
        ),
    )


class FeedbackRoundCreate(RequestModel):
    dataset_id: str = Field(
        min_length=1,
        max_length=64,
        description=(
            "The corrected answers to learn (usually exported from the QA history with POST /api/v1/qa/export). Every "
            "row joins the training split, twice; a row whose question copies a held-out question is left out and "
            "counted in the optimization log, so the locked test split stays unseen."
        ),
    )
    dataset_version: int | None = Field(default=None, ge=1, description="Its version (default: the head).")
    task_name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)


class DatasetPublic(BaseModel):
    dataset_id: str
    name: str
    file_format: str
    size_bytes: int
    sample_count: int
    domain: str | None
    dataset_type: str | None
    org_id: str
    created_by: str | None = None
    is_optimized: bool
    source_dataset_id: str | None
    task_id: str | None
    optimization_log: dict[str, Any] | None = None
    status: DatasetStatus = DatasetStatus.READY
    error: str | None = None
    source_knowledge_base_id: str | None = None
    source_knowledge_base_version: int | None = None
    generation_log: dict[str, Any] | None = Field(
        default=None, description="Candidates, accepted, yield and rejections by reason."
    )
    version: int = Field(default=1, description="The head version: the one a new task trains on")
    created_at: UtcDateTime


class DatasetVersionPublic(BaseModel):
    dataset_id: str
    version: int
    parent_version: int | None
    content_hash: str = Field(description="sha256 of the version's canonical rows, in order")
    row_count: int
    file_format: str
    size_bytes: int
    kind: DatasetVersionKind
    reason: str | None
    changes: dict[str, int] | None = Field(
        default=None, description="Rows added, removed, changed and unchanged against the parent version."
    )
    created_by: str | None
    created_at: UtcDateTime


class DatasetVersionList(BaseModel):
    dataset_id: str
    head: int
    items: list[DatasetVersionPublic]


class DatasetRowPublic(BaseModel):
    row_id: str = Field(description="The row's own `id`, or a hash of its question: kept when it is corrected")
    question: str
    answer: str
    checks: list[dict[str, Any]] = Field(
        description="The fact checks that judge an answer: the row's own, or derived from its answer (each `derived`)"
    )
    tags: list[str]
    excluded: bool = Field(description="Left out of training and evaluation")
    line: int


class DatasetRows(BaseModel):
    dataset_id: str
    version: int
    items: list[DatasetRowPublic]
    total: int
    limit: int
    offset: int


class ChangedRowPublic(BaseModel):
    row_id: str
    fields: list[str]
    before: dict[str, Any]
    after: dict[str, Any]


class DiffRowPublic(BaseModel):
    row_id: str
    record: dict[str, Any]


class DatasetDiff(BaseModel):
    dataset_id: str
    from_version: int
    to_version: int
    counts: dict[str, int] = Field(description="added, removed, changed, unchanged")
    added: list[DiffRowPublic]
    removed: list[DiffRowPublic]
    changed: list[ChangedRowPublic]
    limit: int = Field(description="At most this many rows of each list are shown; `counts` counts them all")


RowId = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00,]+$")]


class RowEditRequest(RequestModel):
    row_id: RowId
    answer: str | None = Field(default=None, min_length=1, max_length=1500, pattern=NO_NUL)
    checks: list[dict[str, Any]] | None = Field(
        default=None, max_length=20, description="The row's checks, replacing what it had ([] removes them)"
    )
    add_tags: list[Tag] = Field(default_factory=list, max_length=20)
    remove_tags: list[Tag] = Field(default_factory=list, max_length=20)
    excluded: bool | None = Field(default=None, description="true leaves the row out of training; false brings it back")


class DatasetAnnotationRequest(RequestModel):
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL, description="Why: kept with the new version")
    base_version: int | None = Field(
        default=None, ge=1, description="The version the edits were made on: 409 if the dataset has moved since"
    )
    edits: list[RowEditRequest] = Field(min_length=1, max_length=1000)


class ErasureRequest(RequestModel):
    dataset_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    row_id: RowId
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL, description="Why: kept with the erasure record")


class DocumentErasureRequest(RequestModel):
    knowledge_base_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    document_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL, description="Why: kept with the erasure record")


class UserErasureRequest(RequestModel):
    user_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL, description="Why: kept with the erasure record")


class ErasurePublic(BaseModel):
    erasure_id: str
    kind: Literal["row", "document", "user"]
    target: str = Field(
        description="row: <dataset id>/<row id>; document: <knowledge base id>/<document id>; user: <user id>"
    )
    reason: str
    requested_by: str | None
    dataset_versions: list[dict[str, Any]] = Field(
        description="Each dataset version rewritten (its content hash and row count before and after) and each index "
        "version rewritten or deleted (its chunks before and after)"
    )
    blobs: list[str] = Field(description="The stored files rewritten without it")
    model_versions: list[str] = Field(description="The model versions trained on it, now flagged (name@version)")
    created_at: UtcDateTime


class LineageKind(StrEnum):
    """The kinds of node of the lineage graph (`services.lineage` says what links them)."""

    DOCUMENT_VERSION = "document_version"
    DOCUMENT = "document"
    KNOWLEDGE_BASE = "knowledge_base"
    DATASET_VERSION = "dataset_version"
    TASK = "task"
    ITERATION = "iteration"
    MODEL_VERSION = "model_version"
    ALIAS = "alias"
    QA_ANSWER = "qa_answer"


class LineageNode(BaseModel):
    kind: str
    id: str
    label: str


class LineageEdge(BaseModel):
    """`from` is upstream of `to`: `to` was made from it, trained on it, or answered with it."""

    from_kind: str
    from_id: str
    to_kind: str
    to_id: str


class LineageGraph(BaseModel):
    root: LineageNode
    nodes: list[LineageNode] = Field(description="The root, everything upstream of it and everything downstream")
    edges: list[LineageEdge]
    truncated: bool = Field(description="The walk stopped at its node limit in one direction")


class DatasetPreview(BaseModel):
    dataset_id: str
    rows: list[dict[str, Any]]
    limit: int


class TrainingProgressPublic(BaseModel):
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    tokens_per_second: float | None = None
    stage: str | None = None


class TaskPublic(BaseModel):
    task_id: str
    task_name: str
    mode: TaskMode
    status: TaskStatus
    suspended_from: TaskStatus | None
    model_name: str
    dataset_id: str
    dataset_version: int | None = Field(
        default=None, description="The version of the dataset the task trains on, pinned when it was made"
    )
    current_dataset_id: str | None
    org_id: str
    created_by: str | None = None
    current_iteration: int
    max_iterations: int
    performance_threshold: float | None
    latest_adapter_key: str | None
    latest_evaluation_key: str | None
    latest_score: float | None
    baseline_score: float | None
    report_key: str | None
    hyperparameters: dict[str, Any]
    knowledge_base_id: str | None = None
    retrieval_top_k: int = 3
    context_statements: int | None = None
    retrain_on_change: bool = False
    parent_task_id: str | None = Field(default=None, description="The task an incremental task was started from.")
    register_as: str | None = Field(
        default=None, description="The registered model its final adapter joins (null: the task name)."
    )
    corrections_dataset_id: str | None = Field(
        default=None,
        description="A feedback round: the dataset of corrected answers it trains on besides its parent's training "
        "split.",
    )
    corrections_dataset_version: int | None = None
    error: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    progress: TrainingProgressPublic | None = None
    workflow_url: str | None = None


class TaskList(BaseModel):
    items: list[TaskPublic]
    total: int
    limit: int
    offset: int


class DatasetList(BaseModel):
    items: list[DatasetPublic]
    total: int
    limit: int
    offset: int


class ExecutionPublic(BaseModel):
    id: int
    task_id: str
    iteration: int
    phase: str
    status: str
    input_dataset_id: str | None
    output_dataset_id: str | None
    adapter_key: str | None
    evaluation_key: str | None
    score: float | None
    metrics: dict[str, Any] | None
    started_at: UtcDateTime
    completed_at: UtcDateTime | None
    error: str | None


class TaskAction(BaseModel):
    task_id: str
    status: TaskStatus
    detail: str


class ErrorResponse(BaseModel):
    detail: Any


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the invalid value is: body, query, path or header, then the field.")
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """422: one shape for both kinds of invalid input, `{"detail": ...}` like every other error."""

    detail: str | list[FieldError] = Field(
        description=(
            "A message saying what is wrong (e.g. an unreadable dataset), or one entry per field that failed "
            "validation."
        )
    )


# --- identity, organizations, keys, audit -------------------------------------------------


class LoginRequest(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    org: str | None = Field(
        default=None, max_length=100, description="Organization name or id; needed only for members of several."
    )


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    org_id: str
    role: Role


class OrganizationMembership(BaseModel):
    org_id: str
    org_name: str
    role: Role


class Me(BaseModel):
    user_id: str
    username: str
    org_id: str
    org_name: str
    role: Role
    scopes: list[Scope]
    api_key_id: str | None = None
    organizations: list[OrganizationMembership]


class OrganizationCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)


RetentionDays = Annotated[int | None, Field(ge=1, le=3650)]


class OrganizationUpdate(RequestModel):
    """Rename the organization, or set how long it keeps its QA history and finished tasks' events (null: for ever)."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    qa_retention_days: RetentionDays = Field(default=None, description="Delete QA history older than this many days")
    event_retention_days: RetentionDays = Field(
        default=None, description="Delete finished tasks' events older than this many days"
    )


class RetentionRunPublic(BaseModel):
    ran_at: UtcDateTime
    qa_entries: int = Field(description="QA history entries deleted")
    task_events: int = Field(description="Task events deleted")
    qa_before: UtcDateTime | None = None
    events_before: UtcDateTime | None = None


class RetentionPublic(BaseModel):
    org_id: str
    qa_retention_days: int | None
    event_retention_days: int | None
    interval_hours: float = Field(description="How often the retention workflow runs")
    runs: list[RetentionRunPublic] = Field(description="The latest passes that found limits here, newest first")


class JudgeSet(RequestModel):
    """The organization's judge for suites' `judge` assertions: an OpenAI-compatible chat-completions endpoint."""

    url: str = Field(
        min_length=8,
        max_length=500,
        pattern=r"^https?://[^\s]+$",
        description="Base URL of the endpoint, e.g. http://judge.internal:8001/v1; its host must be one of the "
        "server's WLOPS_JUDGE_ALLOWED_HOSTS.",
    )
    model: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="The model name to ask for.")
    api_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        pattern=r"^[^\x00\s]+$",
        description="Sent as a bearer token; stored sealed under the server's secret key and never shown again.",
    )


class JudgePublic(BaseModel):
    org_id: str
    url: str | None = Field(description="None: no judge; `judge` assertions fail, saying so.")
    model: str | None
    api_key_set: bool


class OrganizationPublic(BaseModel):
    org_id: str
    name: str
    created_at: UtcDateTime
    running_tasks: int
    max_running_tasks: int
    storage_bytes: int
    max_storage_bytes: int
    qa_retention_days: int | None = None
    event_retention_days: int | None = None


class MemberCreate(RequestModel):
    username: str = Field(min_length=2, max_length=64)
    role: Role = Role.MEMBER
    password: str | None = Field(
        default=None, min_length=8, max_length=1024, description="Needed only when the user does not exist yet."
    )


class MemberUpdate(RequestModel):
    role: Role


class MemberPublic(BaseModel):
    user_id: str
    username: str
    role: Role
    created_at: UtcDateTime


class ApiKeyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1, max_length=10)
    expires_in_days: int | None = Field(default=90, ge=1, le=3650, description="null for a key that never expires.")


class ApiKeyPublic(BaseModel):
    key_id: str
    name: str
    prefix: str
    scopes: list[Scope]
    created_by: str
    created_at: UtcDateTime
    expires_at: UtcDateTime | None
    revoked_at: UtcDateTime | None
    last_used_at: UtcDateTime | None


class ApiKeyCreated(ApiKeyPublic):
    secret: str = Field(
        description="The key itself, shown only in this response; send it as `Authorization: Bearer <secret>`."
    )


class AuditEntryPublic(BaseModel):
    id: int
    at: UtcDateTime
    actor_user_id: str | None
    actor_key_id: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    status_code: int
    client_ip: str | None


class AuditList(BaseModel):
    items: list[AuditEntryPublic]
    total: int
    limit: int
    offset: int


# --- knowledge bases -----------------------------------------------------------------------


class KnowledgeBaseCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    chunk_tokens: int | None = Field(
        default=None,
        ge=16,
        le=224,
        description="Chunk size in MiniLM word pieces (default WLOPS_KNOWLEDGE_CHUNK_TOKENS).",
    )
    chunk_overlap_tokens: int | None = Field(
        default=None, ge=0, le=64, description="Overlap with the chunk before, in whole lines or sentences."
    )


class KnowledgeBasePublic(BaseModel):
    knowledge_base_id: str
    name: str
    description: str | None
    org_id: str
    created_by: str | None
    status: KnowledgeBaseStatus
    embedding_model: str
    chunk_tokens: int
    chunk_overlap_tokens: int
    document_count: int = Field(description="Documents in the current index version.")
    chunk_count: int
    total_bytes: int = Field(description="Bytes of every document the knowledge base holds.")
    version: int = Field(description="Increases with every content change of the index; 0 before the first build.")
    error: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class KnowledgeBaseList(BaseModel):
    items: list[KnowledgeBasePublic]
    total: int
    limit: int
    offset: int


class DocumentPublic(BaseModel):
    document_id: str
    knowledge_base_id: str
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    version: int = Field(
        description="1 for the first upload under this file name, then one more for each new file under it."
    )
    status: Literal["PENDING", "INDEXED", "FAILED"]
    chunk_count: int
    error: str | None = Field(description="Why the document could not be indexed (FAILED).")
    created_at: UtcDateTime
    updated_at: UtcDateTime


class ChunkPublic(BaseModel):
    chunk_id: str
    ordinal: int
    heading_path: list[str]
    text: str
    start: int = Field(description="Character span of the chunk in the document's extracted text.")
    end: int


class DocumentDetail(DocumentPublic):
    chunks: list[ChunkPublic] = Field(
        description="The first chunks of this version in the current index (empty until it is indexed)."
    )


class DocumentList(BaseModel):
    items: list[DocumentPublic]


StaleRowState = Literal["stale", "confirmed", "corrected", "excluded", "removed"]


class StaleRowPublic(BaseModel):
    """A dataset row that a new version of one of the knowledge base's documents contradicts."""

    dataset_id: str
    row_id: str
    question: str
    answer: str = Field(description="The row's answer when it was marked stale.")
    old_value: str = Field(description="The value the row's checks ask for, which the document no longer states.")
    new_value: str | None = Field(description="What the document states in its place (None: the sentence was dropped).")
    old_sentence: str
    new_sentence: str | None = Field(description="The document's new sentence: the source of a correction.")
    document_id: str
    document_name: str
    document_version: int
    knowledge_base_version: int
    marked_in_version: int = Field(description="The dataset version that tagged the row `stale` and excluded it.")
    state: StaleRowState = Field(
        description=(
            "In the dataset's head: stale (still tagged and excluded from training and evaluation), confirmed (back, "
            "as it was), corrected (back, with another answer or checks), excluded (the tag removed, the row kept "
            "out), removed (no longer in the dataset). A user confirms or corrects a row with an annotation that "
            "removes the tag and the exclusion."
        )
    )
    head_version: int = Field(description="The dataset version the state was read from.")
    proposed_answer: str | None = Field(
        default=None,
        description=(
            "The row's answer with the document's change written in (the new value in the old one's place; for a "
            "yes/no row whose sentence now says the opposite, the opposite word and the new sentence). None when it "
            "cannot be written in: correct the row by hand. Never applied by itself: accept it with an annotation of "
            "the dataset (answer and checks, the `stale` tag removed, `excluded: false`), or `wlops knowledge "
            "stale-rows --accept-proposals`."
        ),
    )
    proposed_checks: list[dict[str, Any]] | None = Field(
        default=None, description="The row's fact checks with the change written in; the proposed answer passes them."
    )
    created_at: UtcDateTime


class StaleRowList(BaseModel):
    knowledge_base_id: str
    items: list[StaleRowPublic]
    total: int


class AcceptProposalsRequest(RequestModel):
    reason: str = Field(
        min_length=1, max_length=1000, pattern=NO_NUL, description="Why: kept with each dataset's new version"
    )
    row_ids: list[RowId] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="The stale rows whose proposals to accept; null: every stale row of the knowledge base. A row that "
        "is not stale refuses the whole request, and nothing is written.",
    )


class StaleRowRef(BaseModel):
    dataset_id: str
    row_id: str
    question: str


class AcceptedProposalsPublic(BaseModel):
    """What accepting the stale rows' proposed corrections did."""

    knowledge_base_id: str
    accepted: list[StaleRowRef] = Field(description="Rows now corrected with their proposals, back in training.")
    without_proposal: list[StaleRowRef] = Field(
        description="Rows asked for that have no proposal: still stale, to correct by hand."
    )
    dataset_versions: list[DatasetVersionPublic] = Field(description="One annotation per dataset concerned.")


class GenerateDatasetRequest(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    questions_per_chunk: int = Field(
        default=2, ge=1, le=5, description="Statements of each chunk a question is written for."
    )
    generator: Literal["local", "teacher"] = Field(
        default="local",
        description=(
            "local: the local base model writes questions (cloze questions back it up), offline; teacher: the "
            "OpenAI-compatible endpoint of WLOPS_TEACHER_URL writes the pairs."
        ),
    )
    model_name: str = Field(
        default="smollm2-135m-instruct", min_length=1, max_length=500, description="The local model (generator local)."
    )


class SearchRequest(RequestModel):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=5, ge=1, le=50)


class SearchResult(BaseModel):
    rank: int
    score: float = Field(description="Cosine similarity of the query and the chunk, in [-1, 1].")
    text: str
    chunk_id: str
    document_id: str
    filename: str
    heading_path: list[str]


class SearchResponse(BaseModel):
    knowledge_base_id: str
    version: int
    results: list[SearchResult]


# --- the model registry --------------------------------------------------------------------


class RegisterVersionRequest(RequestModel):
    task_id: str = Field(min_length=1, max_length=64)
    iteration: int | None = Field(
        default=None, ge=1, le=10_000, description="A finished iteration of the task (default: its last one)."
    )
    description: str | None = Field(default=None, max_length=2000)


class PromoteRequest(RequestModel):
    alias: str = Field(default="production", min_length=1, max_length=64, pattern=ALIAS_NAME)
    force: bool = Field(
        default=False, description="Skip the gate (owners and admins: models:force); audited with its reason."
    )
    reason: str | None = Field(default=None, min_length=1, max_length=2000, description="Why; required when forcing.")


class RollbackRequest(RequestModel):
    reason: str | None = Field(default=None, min_length=1, max_length=2000)


class ModelVersionPublic(BaseModel):
    model_name: str
    version: int
    status: str
    erased_data_at: UtcDateTime | None = Field(
        default=None, description="Set when data it was trained on was erased (the adapter cannot unlearn it)"
    )
    adapter_key: str
    sha256: str
    size_bytes: int
    task_id: str
    iteration: int
    dataset_id: str | None
    knowledge_base_id: str | None
    knowledge_base_version: int | None
    retrieval_top_k: int | None
    context_statements: int | None = Field(
        default=None,
        description="Its passages are cut to this many statements nearest the question (null: whole chunks).",
    )
    hyperparameters: dict[str, Any]
    serving_mode: str = Field(description="closed_book or rag: how it answers, and how the gate measures it.")
    scores: dict[str, dict[str, float]] = Field(
        description="mode -> split -> score, on its own task's splits (not comparable across tasks)."
    )
    splits_key: str
    aliases: list[str] = Field(default_factory=list)
    description: str | None
    created_by: str | None
    created_at: UtcDateTime


class ModelVersionList(BaseModel):
    items: list[ModelVersionPublic]
    total: int
    limit: int
    offset: int


class RegisteredModelPublic(BaseModel):
    name: str
    base_model: str
    description: str | None
    org_id: str
    created_by: str | None
    latest_version: int | None
    aliases: dict[str, int] = Field(description="alias -> the version it points at")
    required_suites: dict[str, list[str]] = Field(
        default={}, description="alias -> the suites a promotion to it runs (a blocking one's failing case refuses it)"
    )
    created_at: UtcDateTime
    updated_at: UtcDateTime


class RegisteredModelUpdate(RequestModel):
    """Rename or describe a registered model (give either or both; a description of null clears it)."""

    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=MODEL_NAME)
    description: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)


class RegisteredModelList(BaseModel):
    items: list[RegisteredModelPublic]
    total: int
    limit: int
    offset: int


class AliasMovePublic(BaseModel):
    alias: str
    from_version: int | None
    to_version: int
    kind: Literal["gate", "forced", "rollback", "release"]
    reason: str
    gate_id: str | None
    actor_user_id: str | None
    actor_key_id: str | None
    at: UtcDateTime


class AliasPublic(BaseModel):
    alias: str
    version: int
    updated_at: UtcDateTime
    history: list[AliasMovePublic] = Field(description="Its moves, newest first.")


class GatePublic(BaseModel):
    gate_id: str
    model_name: str
    alias: str
    candidate_version: int
    current_version: int | None = Field(
        description="What the alias pointed at when the gate started (null: nothing, so the base model)."
    )
    status: GateStatus
    forced: bool
    margin: float
    mode: str
    figures: dict[str, Any] | None = Field(
        description="Scores side by side: per test set, pooled, and the differences with 95% intervals."
    )
    reason: str | None
    requested_by: str | None
    created_at: UtcDateTime
    finished_at: UtcDateTime | None


class GateList(BaseModel):
    items: list[GatePublic]
    total: int
    limit: int
    offset: int


# --- releases ------------------------------------------------------------------------------


class ReleaseCreate(RequestModel):
    """A release of `alias` to `candidate_version` in weighted steps; the thresholds' defaults suit production."""

    candidate_version: int = Field(ge=1, le=2**31 - 1)
    alias: str = Field(default="production", min_length=1, max_length=64, pattern=ALIAS_NAME)
    steps: list[int] = Field(
        default=[10, 50, 100],
        min_length=1,
        max_length=20,
        description="The candidate's weight at each step, in percent, rising strictly to 100.",
    )
    bake_seconds: float = Field(default=300.0, ge=0, le=7 * 86400, description="Every step runs at least this long.")
    min_requests: int = Field(default=50, ge=1, le=1_000_000, description="Per arm with traffic, before analysing.")
    max_wait_seconds: float = Field(
        default=3600.0, ge=0, le=30 * 86400, description="A step without enough requests after this pauses."
    )
    poll_seconds: float = Field(default=15.0, ge=0.1, le=3600)
    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="Above the current version's error rate.")
    max_down_rate: float = Field(default=0.10, ge=0, le=1, description="Answers rated down, above the current's rate.")
    max_latency_ratio: float = Field(default=1.5, ge=1, le=100, description="p95 latency over the current's ...")
    latency_slack_ms: float = Field(default=100.0, ge=0, le=600_000, description="... plus this.")
    max_fact_drop: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Answers to questions the versions know the facts of (their splits' rows and the blocking suites' "
        "cases with checks) are judged by those checks: the candidate's share right may be this much below the "
        "current's.",
    )
    min_fact_checked: int = Field(
        default=5, ge=1, le=1_000_000, description="Fact-checked answers each arm needs before that rule applies."
    )
    shadow_prompts: int = Field(
        default=16,
        ge=0,
        le=200,
        description="Up to this many of a step's real prompts that ask what a case of a blocking suite asks are asked "
        "again, in the shadow, of both versions and judged by that case's assertions (0: none).",
    )
    max_shadow_broken: int = Field(
        default=0,
        ge=0,
        le=200,
        description="Shadow prompts the current version passes that the candidate may fail before the step fails.",
    )


class ReleaseControlRequest(RequestModel):
    reason: str | None = Field(default=None, min_length=1, max_length=2000, description="Why (audited).")


class ReleaseDecisionPublic(BaseModel):
    key: str
    kind: str = Field(description="start, traffic, analysis, pause, resume, rollback, promote, abort or stopped.")
    step_index: int
    status: ReleaseStatus
    candidate_weight: int
    reason: str
    figures: dict[str, Any] | None = Field(description="Per arm: requests, error rate, p95 latency, rated down.")
    actor_user_id: str | None
    actor_key_id: str | None
    at: UtcDateTime


class ReleasePublic(BaseModel):
    release_id: str
    model_name: str
    alias: str
    current_version: int
    candidate_version: int
    steps: list[int]
    step_index: int
    candidate_weight: int
    status: ReleaseStatus
    reason: str | None
    thresholds: dict[str, Any]
    created_by: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    finished_at: UtcDateTime | None
    decisions: list[ReleaseDecisionPublic] = Field(description="Every decision with its figures, oldest first.")


class ReleaseList(BaseModel):
    items: list[ReleasePublic]
    total: int
    limit: int
    offset: int


# --- question answering history ------------------------------------------------------------


class QAEntryPublic(BaseModel):
    entry_id: str
    conversation_id: str
    model: str = Field(description="The exact version that answered (name@3), or a base model.")
    messages: list[dict[str, Any]]
    status: Literal["completed", "failed", "cancelled"] = Field(
        description="completed; failed (the engine failed, or the request was refused once the model was known); "
        "cancelled (the client left mid-answer)."
    )
    answer: str = Field(description="The answer, or what was generated before it failed or was cancelled.")
    finish_reason: str | None = Field(description="stop or length, for a completed answer.")
    error: str | None = Field(description="Why it failed.")
    knowledge_base_id: str | None
    sources: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    user_id: str | None
    api_key_id: str | None
    rating: Literal["up", "down"] | None
    corrected_answer: str | None
    feedback_at: UtcDateTime | None
    created_at: UtcDateTime
    release_id: str | None = Field(default=None, description="The release whose traffic split chose the version.")
    release_arm: Literal["current", "candidate"] | None = Field(default=None, description="Its side of the split.")


class QAHistoryList(BaseModel):
    items: list[QAEntryPublic]
    total: int
    limit: int
    offset: int


class FeedbackRequest(RequestModel):
    rating: Literal["up", "down"]
    corrected_answer: str | None = Field(
        default=None, min_length=1, max_length=10_000, description="What the answer should have been."
    )


class QAFilter(RequestModel):
    model: str | None = Field(
        default=None, min_length=1, max_length=200, description="name@3 for one version, name for all of a model's."
    )
    conversation_id: str | None = Field(default=None, min_length=1, max_length=64)
    rating: Literal["up", "down"] | None = None


class QADatasetRequest(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=200, description="Needed for a new dataset")
    filter: QAFilter = Field(default_factory=QAFilter)
    dataset_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=NO_NUL,
        description="Make the feedback the next version of this dataset (an earlier export) instead of a new dataset: "
        "its diff with the version before shows what was corrected since",
    )


# --- switching organization ------------------------------------------------------------------


class OrgSwitchRequest(RequestModel):
    org_id: str = Field(
        min_length=1,
        max_length=64,
        description="One of the caller's organizations (`organizations` of GET /api/v1/auth/me).",
    )


# --- scenario suites -------------------------------------------------------------------------

SuiteCases = Annotated[
    list[dict[str, Any]],
    Field(
        min_length=1,
        max_length=500,
        description="The cases, each `{id, prompt | messages, knowledge_base_id?, context?, checks?, refusal?, "
        "max_latency_ms?, json_schema?}` with at least one assertion (docs/api.md#scenario-suites); a bad one is 422 "
        "naming the case and the field, and nothing is stored.",
    ),
]


class SuiteCreate(RequestModel):
    name: str = Field(pattern=MODEL_NAME, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    blocking: bool = Field(default=False, description="A failing case refuses a promotion that requires the suite")
    cases: SuiteCases


class SuiteVersionCreate(RequestModel):
    cases: SuiteCases
    description: str | None = Field(default=None, max_length=2000, description="Default: the previous version's")
    blocking: bool | None = Field(default=None, description="Default: the previous version's")
    base_version: int | None = Field(default=None, ge=1, description="409 if the suite is no longer at this version")


class SuiteSummary(BaseModel):
    suite_id: str = Field(description="This version's id")
    name: str
    version: int
    content_hash: str = Field(description="sha256 of the cases' canonical JSON, in order")
    blocking: bool
    description: str | None
    case_count: int
    created_by: str | None
    created_at: UtcDateTime


class SuitePublic(SuiteSummary):
    cases: list[dict[str, Any]]


class SuiteList(BaseModel):
    items: list[SuiteSummary]
    total: int
    limit: int
    offset: int


class SuiteVersionList(BaseModel):
    name: str
    items: list[SuiteSummary]


class SuiteRunRequest(RequestModel):
    model: str = Field(
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="What answers: `name@3`, `name@alias`, `name` (its production alias) or a base model",
    )
    version: int | None = Field(default=None, ge=1, le=1_000_000, description="The suite's version (default: latest)")


class CaseResult(BaseModel):
    case_id: str
    answer: str
    latency_ms: int
    passed: bool
    results: list[dict[str, Any]] = Field(description="Each assertion: `{assertion, passed, detail}`")
    passages: list[str] = Field(default=[], description="The passages the question was asked with")


class SuiteRunSummary(BaseModel):
    run_id: str
    suite_name: str
    suite_version: int
    content_hash: str
    model: str = Field(description="The exact version that answered (name@3), or a base model")
    status: SuiteRunStatus
    error: str | None
    passed: int
    failed: int
    total: int
    gate_id: str | None = Field(description="The promotion gate that ran it, if one did")
    requested_by: str | None
    created_at: UtcDateTime
    finished_at: UtcDateTime | None


class SuiteRunPublic(SuiteRunSummary):
    results: list[CaseResult]


class SuiteRunList(BaseModel):
    items: list[SuiteRunSummary]
    total: int
    limit: int
    offset: int


class SuiteComparison(BaseModel):
    before: SuiteRunSummary
    after: SuiteRunSummary
    cases: dict[str, Literal["fixed", "broken", "still_wrong", "still_right"]]
    counts: dict[str, int]
    p_value: float = Field(description="Exact McNemar test on the fixed against the broken cases")
    only_before: list[str]
    only_after: list[str]


class AliasSuitesRequest(RequestModel):
    suites: list[Annotated[str, Field(pattern=MODEL_NAME, max_length=100)]] = Field(
        max_length=20, description="Suite names (their latest version runs); an empty list requires none"
    )


class AliasSuites(BaseModel):
    model_name: str
    alias: str
    suites: list[str]
