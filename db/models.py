"""Stored models: organizations and their members, API keys and audit log; datasets, ml_tasks, task_executions;
knowledge bases and their documents (the chunks are stored with each index version, in object storage), and the
dataset rows their documents' new versions made stale; the model
registry: registered models, their versions, aliases with the history of their moves (and the suites each alias
requires), and promotion gates; scenario suites, one row per version, and their runs; the history of every completion
the serving process answered, with its feedback; the events of each task (its live progress, replayed by the API's
event stream).

Every dataset and task belongs to one organization (`org_id`, a server-generated id that also prefixes
its storage keys) and records the user who created it (`created_by`). Columns that name a stored
object hold its object-store key and end in `_key`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.clock import utcnow


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # how long the QA history and finished tasks' events are kept (None: for ever); the retention workflow prunes
    qa_retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event_retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the organization's judge for suites' `judge` assertions: an OpenAI-compatible endpoint, its API key sealed
    judge_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    judge_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    judge_api_key_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Erasure(Base):
    """What one erasure removed, from where, and which model versions had been trained on it."""

    __tablename__ = "erasures"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # row
    target: Mapped[str] = mapped_column(String(200))  # <dataset id>/<row id>
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # [{version, content_hash_before, content_hash_after, rows_before, rows_after}]: the hash chain of each rewrite
    dataset_versions: Mapped[list] = mapped_column(JSON)
    blobs: Mapped[list] = mapped_column(JSON)  # the stored artifacts rewritten without it
    model_versions: Mapped[list] = mapped_column(JSON)  # ["name@3", ...] flagged: trained on erased data
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RetentionRun(Base):
    """What one pass of the retention workflow pruned in one organization, and the cut-offs it used."""

    __tablename__ = "retention_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    ran_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    qa_entries: Mapped[int] = mapped_column(Integer)
    task_events: Mapped[int] = mapped_column(Integer)
    qa_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    events_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # bumped by logout: every token issued before carries an older version and is refused
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)  # the public part of the secret, to find the row
    # sha256 of the whole secret; the secret itself is never stored
    secret_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    actor_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # method and route template, e.g. "POST /api/v1/tasks/{task_id}/start"
    action: Mapped[str] = mapped_column(String(200))
    resource_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status_code: Mapped[int] = mapped_column(Integer)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    storage_key: Mapped[str] = mapped_column(String(500))
    file_format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sample_count: Mapped[int] = mapped_column(Integer)
    domain: Mapped[str | None] = mapped_column(String(200), nullable=True)
    dataset_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    # user id; None for datasets a workflow wrote
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    is_optimized: Mapped[bool] = mapped_column(Boolean, default=False)
    source_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    optimization_log: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # core.status.DatasetStatus
    status: Mapped[str] = mapped_column(String(16), default="READY", server_default="READY")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # generated from a knowledge base: which one, at which index version, and what validation kept and rejected
    source_knowledge_base_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_knowledge_base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    generation_log: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # the head version: storage_key, file_format, size_bytes and sample_count above are its file's
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetVersion(Base):
    """One immutable version of a dataset: its file, the hash of its canonical rows, its parent, who made it and why."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_dataset_version"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    parent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    row_count: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(500))
    file_format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(Integer)
    # core.status.DatasetVersionKind: upload | annotation | recorded (a dataset made before versions)
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # against the parent: {"added": n, "removed": n, "changed": n, "unchanged": n}
    changes: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MLTask(Base):
    __tablename__ = "ml_tasks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    suspended_from: Mapped[str | None] = mapped_column(String(16), nullable=True)
    model_name: Mapped[str] = mapped_column(String(500))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    current_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # user id
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # first start request
    current_iteration: Mapped[int] = mapped_column(Integer, default=0)
    max_iterations: Mapped[int] = mapped_column(Integer, default=1)
    performance_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    latest_adapter_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    latest_evaluation_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    latest_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    baseline_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    report_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    hyperparameters: Mapped[dict] = mapped_column(JSON, default=dict)
    # with a knowledge base: training passages come from it, evaluation runs closed book and with retrieval
    knowledge_base_id: Mapped[str | None] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="SET NULL"), nullable=True, index=True
    )
    retrieval_top_k: Mapped[int] = mapped_column(Integer, default=3)
    # with a knowledge base: each prompt's passages cut to this many statements nearest the question (None: all)
    context_statements: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # follow the knowledge base: when its documents change after this task finished, an incremental task starts from it
    retrain_on_change: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    parent_task_id: Mapped[str | None] = mapped_column(
        ForeignKey("ml_tasks.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # the newest knowledge-base version the task has grounded on (its data optimization read that index): a change
    # notice for a version no newer than this has nothing new for it
    knowledge_base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the version of its dataset it trains on, pinned when it is created (None: a task made before dataset versions)
    dataset_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the registered model its final adapter joins
    register_as: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # a feedback round: the dataset of corrected answers (and its version) it trains on besides its parent's training
    # split, every row in training and none held out
    corrections_dataset_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    corrections_dataset_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class TaskExecution(Base):
    __tablename__ = "task_executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("ml_tasks.id"), index=True)
    iteration: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    input_dataset_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    output_dataset_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    adapter_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    evaluation_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class TaskEvent(Base):
    """One thing that happened to a task, in order: a status change, phase progress, an iteration's score, the end.
    The API's event stream replays them after a client's `Last-Event-ID` (the id)."""

    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("ml_tasks.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # status | progress | score | final
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KnowledgeBase(Base):
    __tablename__ = "knowledge_bases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    embedding_model: Mapped[str] = mapped_column(String(100))
    chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap_tokens: Mapped[int] = mapped_column(Integer)
    document_count: Mapped[int] = mapped_column(Integer, default=0)  # documents indexed in the current version
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    total_bytes: Mapped[int] = mapped_column(Integer, default=0)  # of every document it holds
    version: Mapped[int] = mapped_column(Integer, default=0)  # increases with every content change of the index
    # the current version's folder in object storage
    index_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class KnowledgeDocument(Base):
    __tablename__ = "knowledge_documents"
    __table_args__ = (UniqueConstraint("knowledge_base_id", "filename"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    knowledge_base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)  # a new file under the same name is the next version
    status: Mapped[str] = mapped_column(String(16))  # PENDING | INDEXED | FAILED
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    storage_key: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class StaleRow(Base):
    """A dataset row that a new version of a knowledge-base document contradicts: marked stale (tagged and excluded) in
    the dataset version `dataset_version`, with the value that changed and the sentences before and after. Its state
    (still stale, confirmed, corrected) is read from the dataset's head, where a user's annotation resolves it."""

    __tablename__ = "stale_rows"
    __table_args__ = (
        UniqueConstraint(
            "dataset_id", "row_id", "document_id", "document_version", name="uq_stale_rows_row_document_version"
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    knowledge_base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    knowledge_base_version: Mapped[int] = mapped_column(Integer)  # the index version that holds the new document
    document_id: Mapped[str] = mapped_column(String(64))
    document_name: Mapped[str] = mapped_column(String(255))
    document_version: Mapped[int] = mapped_column(Integer)
    dataset_id: Mapped[str] = mapped_column(String(64), index=True)
    dataset_version: Mapped[int] = mapped_column(Integer)  # the version that marked it
    row_id: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)  # as it was marked: a different answer in the head is a correction
    checks: Mapped[list] = mapped_column(JSON, default=list)  # the same, for its checks
    old_value: Mapped[str] = mapped_column(String(300))
    new_value: Mapped[str | None] = mapped_column(String(300), nullable=True)
    old_sentence: Mapped[str] = mapped_column(Text)
    new_sentence: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegisteredModel(Base):
    """A named line of adapters on one base model, unique by name within its organization."""

    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    base_model: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    # alias -> names of the suites a promotion to that alias must pass (their blocking ones refuse on a failing case)
    required_suites: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None when a task registered it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ModelVersion(Base):
    """One adapter of a registered model, with where it came from and how it scored on its own task's splits."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"), UniqueConstraint("model_id", "task_id", "iteration"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within its model; never reused
    adapter_key: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))  # of the adapter's files, in name order
    size_bytes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # READY: its adapter is stored and checksummed
    # lineage
    task_id: Mapped[str] = mapped_column(String(64), index=True)
    iteration: Mapped[int] = mapped_column(Integer)
    dataset_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the training set of that iteration
    knowledge_base_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    knowledge_base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    retrieval_top_k: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # asked as it was trained: its passages cut to this many statements nearest the question (None: whole chunks)
    context_statements: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hyperparameters: Mapped[dict] = mapped_column(JSON, default=dict)
    # closed_book | rag: how it answers, and so how the gate measures it
    serving_mode: Mapped[str] = mapped_column(String(16))
    scores: Mapped[dict] = mapped_column(JSON, default=dict)  # mode -> split -> overall score, on its own task's splits
    splits_key: Mapped[str] = mapped_column(String(500))  # its task's locked splits (the gate reads the test split)
    # the passages retrieved for those held-out questions
    contexts_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    evaluation_key: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # set when data it was trained on was erased: the adapter cannot unlearn it
    erased_data_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModelAlias(Base):
    """A name (`production`, `staging`, any) that points at one version of a model."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class AliasMove(Base):
    """One move of an alias: who, when, from which version to which, and why (a gate, a forced promotion, a
    rollback).
    """

    __tablename__ = "alias_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # gate | forced | rollback | release
    reason: Mapped[str] = mapped_column(Text)
    gate_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PromotionGate(Base):
    """A request to point an alias at a version, and the gate's decision with its figures."""

    __tablename__ = "promotion_gates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    candidate_version: Mapped[int] = mapped_column(Integer)
    # what the alias pointed at when the gate started
    current_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # core.status.GateStatus
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    margin: Mapped[float] = mapped_column(Float)
    mode: Mapped[str] = mapped_column(String(16))  # the serving mode it measured in
    figures: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    requested_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Release(Base):
    """A release of an alias from its current version to a candidate, in weighted steps (`core.status.ReleaseStatus`);
    its decisions, each with its figures, are `ReleaseDecision` rows."""

    __tablename__ = "releases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    current_version: Mapped[int] = mapped_column(Integer)  # what the alias pointed at when the release started
    candidate_version: Mapped[int] = mapped_column(Integer)
    steps: Mapped[list] = mapped_column(JSON)  # the candidate's weight at each step, in percent: [10, 50, 100]
    step_index: Mapped[int] = mapped_column(Integer, default=0)  # the step underway (or the last one reached)
    candidate_weight: Mapped[int] = mapped_column(Integer, default=0)  # percent of the alias's traffic
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # bake_seconds, min_requests, max_wait_seconds, max_error_rate, max_down_rate, max_latency_ratio, ...
    thresholds: Mapped[dict] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ReleaseDecision(Base):
    """One decision of a release (a traffic change, an analysis, a pause, a promotion, ...) with its figures. `key`
    names it within its release, so a retried or replayed activity finds it made and changes nothing."""

    __tablename__ = "release_decisions"
    __table_args__ = (UniqueConstraint("release_id", "key", name="uq_release_decisions_release_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    release_id: Mapped[str] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # start | traffic | analysis | pause | resume | promote | ...
    step_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # the release's status after it
    candidate_weight: Mapped[int] = mapped_column(Integer)  # the weight after it
    reason: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    actor_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Suite(Base):
    """One immutable version of a scenario suite: its cases (`suites.cases`), their content hash, and whether a failing
    case refuses a promotion (`blocking`)."""

    __tablename__ = "suites"
    __table_args__ = (UniqueConstraint("org_id", "name", "version", name="uq_suites_org_name_version"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within its name
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the cases' canonical JSON
    blocking: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    cases: Mapped[list] = mapped_column(JSON)
    case_count: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SuiteRun(Base):
    """One suite version answered by one model version (or the base model): each case's answer and verdict, and the
    totals. A run made by a promotion gate names it."""

    __tablename__ = "suite_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    suite_id: Mapped[str] = mapped_column(ForeignKey("suites.id"), index=True)
    suite_name: Mapped[str] = mapped_column(String(100))
    suite_version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    # what answered: name@3 (a registered version), or the base model when model_version is None
    model: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # core.status.SuiteRunStatus
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # [{case_id, answer, latency_ms, passed, results: [{assertion, passed, detail}]}], in the suite's case order
    results: Mapped[list] = mapped_column(JSON, default=list)
    passed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    gate_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # the release whose start ran it against the candidate (the blocking suites its alias requires)
    release_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class QAEntry(Base):
    """One completion answered by `wlops serve`: who asked which model version what, what it answered from which
    sources, at what cost, and what the asker thought of it."""

    __tablename__ = "qa_history"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    # the exact version that answered: name@3, or a base model
    model: Mapped[str] = mapped_column(String(200), index=True)
    model_version_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    messages: Mapped[list] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    # completed (it answered), failed (the engine failed, or the request was refused once the model was known) or
    # cancelled (the client left mid-answer); `answer` is what was generated until then
    status: Mapped[str] = mapped_column(String(16), default="completed", server_default="completed", index=True)
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)  # stop | length; None unless completed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed
    knowledge_base_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sources: Mapped[list] = mapped_column(JSON, default=list)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    rating: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)  # up | down
    # the release whose traffic split chose this version, and its arm (current | candidate); None outside releases
    release_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    release_arm: Mapped[str | None] = mapped_column(String(16), nullable=True)
    corrected_answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    feedback_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    feedback_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
