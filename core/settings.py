"""All WLOps settings in one pydantic-settings object, read from `WLOPS_` environment variables."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_QUEUE_WORKFLOWS = "wlops-workflows"
TASK_QUEUE_BOOKKEEPING = "wlops-bookkeeping"
TASK_QUEUE_OPTIMIZE = "wlops-optimize"
TASK_QUEUE_TRAIN = "wlops-train"
TASK_QUEUE_EVALUATE = "wlops-evaluate"
TASK_QUEUE_KNOWLEDGE = "wlops-knowledge"

# Which task queues each worker pool polls. `control` runs workflow code and the small
# bookkeeping activities (database projection, compensation); the others run one phase each.
WORKER_POOL_QUEUES: dict[str, tuple[str, ...]] = {
    "control": (TASK_QUEUE_WORKFLOWS, TASK_QUEUE_BOOKKEEPING),
    "optimize": (TASK_QUEUE_OPTIMIZE, TASK_QUEUE_KNOWLEDGE),  # data preparation on CPUs: datasets and knowledge bases
    "train": (TASK_QUEUE_TRAIN,),
    "evaluate": (TASK_QUEUE_EVALUATE,),
}
WORKER_POOLS = tuple(WORKER_POOL_QUEUES)
# Each pool serves its Prometheus metrics on its own port
# (the Temporal SDK's and the WLOps metrics its activities record).
WORKER_METRICS_PORTS = {"all": 9100, "control": 9101, "optimize": 9102, "train": 9103, "evaluate": 9104}
# `all` runs every pool in one process (embedded use and tests).
POOL_TASK_QUEUES: dict[str, tuple[str, ...]] = {
    **WORKER_POOL_QUEUES,
    "all": tuple(q for queues in WORKER_POOL_QUEUES.values() for q in queues),
}


# What every WLOps process sets before it loads a model: models and tokenizers come from installed packages,
# never the network, and the tokenizers' own thread pool must not fight the workers' threads (or fork).
# Progress bars (tqdm's, and the Hugging Face libraries' own) stay out of the logs:
# the phases log and report their own progress.
PROCESS_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}


def configure_process_environment() -> None:
    """Called once by each entry point (the `wlops` command, benchmarks, tests).

    Library code never writes the environment.
    """
    for name, value in PROCESS_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


DEFAULT_SECRET_KEY = "wlops-development-secret-do-not-use-in-production"
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to `WLOPS_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="WLOPS_", extra="ignore")

    data_dir: Path = Field(default=Path(".wlops"), description="Root for the embedded stack's files.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under data_dir if unset.")

    temporal_address: str | None = Field(
        default=None, description="Existing Temporal cluster; embedded dev server if unset."
    )
    temporal_namespace: str = Field(
        default="default", description="The Temporal namespace of workflows and task queues."
    )
    temporal_port: int = Field(default=7233, description="gRPC port of the embedded Temporal dev server.")
    temporal_ui_port: int = Field(default=8233, description="Port of the embedded dev server's Temporal Web UI.")

    api_host: str = Field(default="127.0.0.1", description="Where `wlops api` listens.")
    api_port: int = Field(default=8000, description="Port of `wlops api` (the API and the web console).")
    mcp_host: str = Field(default="127.0.0.1", description="Where `wlops mcp --transport http` listens.")
    mcp_port: int = Field(
        default=8003,
        description="Port of `wlops mcp --transport http` (the MCP endpoint is `/mcp`; `--port` overrides).",
    )

    # The `wlops` resource commands (cli/api_client.py) talk to an API over HTTP: which one, and how they log in.
    api_url: str | None = Field(
        default=None,
        description="The API the `wlops` resource commands talk to; unset: the one last logged in to, else http://127.0.0.1:8000.",
    )
    config_dir: Path = Field(
        default=Path("~/.config/wlops"),
        description="Where the `wlops` resource commands keep their logins (`credentials.json`, mode 0600).",
    )
    api_key: str | None = Field(
        default=None,
        description="An API key (`wlk_…`) the `wlops` resource commands send instead of a stored login; also the "
        "credential of `wlops mcp --transport stdio` (an API key or an access token).",
    )

    s3_endpoint: str | None = Field(
        default=None, description="host:port of an S3-compatible server; local directory if unset."
    )
    s3_access_key: str = Field(default="minioadmin", description="Access key of the S3-compatible server.")
    s3_secret_key: str = Field(default="minioadmin", description="Secret key of the S3-compatible server.")
    s3_bucket: str = Field(default="wlops", description="Bucket that holds every stored object.")
    s3_secure: bool = Field(default=False, description="Reach the S3-compatible server over HTTPS.")

    model_cache: Path | None = Field(
        default=None, description="Where de-quantized base models are cached; data_dir/model-cache if unset."
    )

    # Access control. Outside development the server refuses to start with the default or a weak secret.
    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses to start with the default or a weak `WLOPS_SECRET_KEY`.",
    )
    secret_key: str = Field(
        default=DEFAULT_SECRET_KEY, description="Signs access and refresh tokens (HS256); at least 32 characters."
    )
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60, description="Lifetime of an access token.")
    refresh_token_days: int = Field(default=7, ge=1, le=90, description="Lifetime of a refresh token.")
    dev_username: str = Field(default="dev", description="Development owner created by `make demo` / `make dev`.")
    dev_password: str = Field(
        default="wlops-dev-password", description="Development owner's password (development default)."
    )
    dev_org: str = Field(default="dev", description="Organization of the development owner.")
    login_failures_per_minute: int = Field(
        default=10, ge=1, description="Failed logins per username and client before 429."
    )

    # Quotas per organization and limits on what one request may send.
    max_running_tasks_per_org: int = Field(
        default=2, ge=1, description="Tasks started and not yet finished, per organization."
    )
    max_storage_bytes_per_org: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="Bytes an organization may store (datasets and documents)."
    )
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0, description="Largest dataset upload.")
    max_upload_rows: int = Field(default=200_000, ge=1, description="Most rows of a dataset upload.")
    max_line_bytes: int = Field(default=256 * 1024, ge=1024, description="Longest line of a JSONL or CSV upload.")
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest body of any request other than an upload."
    )
    max_document_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="Largest knowledge-base document (md, txt, html, pdf)."
    )

    # Knowledge bases: chunk size in the embedding model's tokens, and how the ingestion workflow batches changes.
    knowledge_chunk_tokens: int = Field(
        default=160, ge=16, le=224, description="Chunk size (MiniLM word pieces; the model reads 256)."
    )
    knowledge_chunk_overlap_tokens: int = Field(
        default=32, ge=0, le=64, description="How much a chunk repeats of the one before (whole lines or sentences)."
    )
    knowledge_settle_seconds: float = Field(
        default=2.0, ge=0, description="A build starts once uploads have paused this long."
    )
    knowledge_idle_seconds: int = Field(
        default=600, ge=1, description="An ingestion workflow with nothing to do ends after this long."
    )
    # A bigger model as a teacher for generated datasets: any OpenAI-compatible chat-completions endpoint.
    teacher_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible API, e.g. http://host:8001/v1."
    )
    teacher_model: str | None = Field(default=None, description="The model name to ask for.")
    teacher_api_key: str | None = Field(default=None, description="Sent as a bearer token, if set.")
    # Suites' `judge` assertions ask each organization's own endpoint; these are the hosts an organization may name.
    judge_allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts an organization's judge URL may point at (none by default: the server "
        "calls the URL, so an operator decides which hosts it may reach).",
    )
    # Incremental re-training when a followed knowledge base changes.
    retrain_quiet_seconds: float = Field(
        default=60, ge=0, description="Changes within this long start one incremental task, not several."
    )
    retrain_poll_seconds: float = Field(
        default=30, gt=0, description="How often a pending retraining looks whether its task has ended."
    )
    # Retention: a scheduled workflow prunes the QA history and finished tasks' events past each organization's limits.
    retention_interval_hours: float = Field(
        default=24, gt=0, le=24 * 30, description="How often the retention workflow runs (a Temporal schedule)."
    )
    # Tasks with a knowledge base: how training prompts are built (RAFT) and how long they may be.
    raft_oracle_fraction: float = Field(
        default=0.8, ge=0, le=1, description="Share of training prompts whose passages include the answer's chunk."
    )
    rag_max_seq_length: int = Field(
        default=512, ge=64, le=8192, description="Default max_seq_length of a task with a knowledge base."
    )
    # The model registry's promotion gate.
    promotion_margin: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description=(
            "A candidate is refused when its pooled blended wording score is worse than the current version's "
            "or the base model's by more than this (test sets without fact checks: it must beat both by this much)."
        ),
    )
    promotion_significance: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description=(
            "A candidate is promoted only if it answers significantly more questions right than the current version "
            "and the base model: exact McNemar test at this level; better but not significantly is INCONCLUSIVE "
            "(not enough evidence)."
        ),
    )
    gate_evaluate_seconds: int = Field(
        default=3600, ge=1, description="How long the gate's evaluation of the candidate may run."
    )
    promote_incremental: bool = Field(
        default=True,
        description=(
            "An incremental task's version goes before the gate for every alias that points at its parent's version."
        ),
    )
    # The serving process (`wlops serve`): many adapters on one base model.
    serve_host: str = Field(default="127.0.0.1", description="Where `wlops serve` listens.")
    serve_port: int = Field(default=8001, ge=1, le=65535, description="Port of `wlops serve`.")
    serve_max_adapters: int = Field(
        default=8, ge=1, description="Adapters kept loaded per base model (least recently used leave first)."
    )
    serve_max_batch: int = Field(default=16, ge=1, description="Requests decoded together, whatever adapters they use.")
    serve_batch_window_ms: float = Field(
        default=10, ge=0, description="How long the first request of a batch waits for others."
    )
    serve_max_tokens: int = Field(default=512, ge=1, description="The largest max_tokens a request may ask for.")
    serve_default_max_tokens: int = Field(default=128, ge=1, description="max_tokens of a request that does not say.")
    serve_retrieval_top_k: int = Field(
        default=3, ge=1, le=20, description="Passages per question when the version does not say."
    )
    serve_warm_models: list[str] = Field(
        default_factory=list,
        description=("Base models loaded as the process starts (a JSON list); /readyz answers 200 once each is ready."),
    )

    # Worker concurrency per pool: training holds a whole model, so one at a time by default.
    optimize_concurrency: int = Field(
        default=2, ge=1, description="Optimization activities at once per optimize worker."
    )
    knowledge_concurrency: int = Field(
        default=1, ge=1, description="Knowledge-base builds at once per optimize worker (each embeds on every core)."
    )
    train_concurrency: int = Field(default=1, ge=1, description="Training activities at once per train worker.")
    evaluate_concurrency: int = Field(
        default=1, ge=1, description="Evaluation, generation and gate activities at once per evaluate worker."
    )
    bookkeeping_concurrency: int = Field(
        default=8, ge=1, description="Bookkeeping activities (projection, compensation) at once per control worker."
    )
    workflow_task_concurrency: int = Field(
        default=2,
        ge=2,
        description=(
            "Workflow tasks a control worker processes at once. They share one Python interpreter, so more at once "
            "only shares its time: when 50 runs start together, 2 finish the first ones first instead of all of them "
            "late (bench/concurrent_runs). At least 2: with 1 the worker's only poll serves its sticky queue or the "
            "shared one, and a task on the other waits 10 s."
        ),
    )

    # Evaluation: weights of the overall score and grade thresholds on it.
    score_weight_exact_match: float = Field(
        default=0.1, ge=0, description="Weight of exact match in the blended score."
    )
    score_weight_token_f1: float = Field(default=0.4, ge=0, description="Weight of token F1 in the blended score.")
    score_weight_bleu: float = Field(default=0.2, ge=0, description="Weight of BLEU in the blended score.")
    score_weight_rouge_l: float = Field(default=0.3, ge=0, description="Weight of ROUGE-L in the blended score.")
    grade_excellent: float = Field(default=0.8, ge=0, le=1, description="Lowest score graded excellent.")
    grade_good: float = Field(default=0.6, ge=0, le=1, description="Lowest score graded good.")
    grade_acceptable: float = Field(default=0.4, ge=0, le=1, description="Lowest score graded acceptable.")

    # Data splits (fractions of the cleaned dataset) and their minimum sizes.
    split_feedback_fraction: float = Field(
        default=0.15, gt=0, lt=0.5, description="Share of the cleaned dataset in the feedback split (bad cases)."
    )
    split_test_fraction: float = Field(
        default=0.15, gt=0, lt=0.5, description="Share of the cleaned dataset in the locked test split."
    )
    split_min_examples: int = Field(default=4, ge=1, description="Fewest examples each split must hold.")

    heartbeat_timeout_seconds: int = Field(
        default=60, ge=5, description="A worker silent this long is presumed dead; its activity is retried."
    )
    activity_max_attempts: int = Field(
        default=3, ge=1, description="Attempts of an activity before its workflow sees it fail (retryable errors)."
    )
    checkpoint_every_steps: int = Field(
        default=10, ge=1, description="Training stores a checkpoint this often; a retried attempt resumes from it."
    )
    train_log_every_steps: int = Field(
        default=10, ge=1, description="The training loop logs step, loss and tokens/s this often."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="Worker, API and serving logs: JSON lines, or plain text."
    )
    log_level: str = Field(default="INFO", description="Lowest level logged (Python logging's level names).")
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Where worker pools serve their Prometheus metrics (0.0.0.0 in containers)."
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="This worker's metrics port; unset: its pool's default (9100-9104); 0: no metrics server.",
    )
    progress_event_seconds: float = Field(
        default=2.0, ge=0, description="A running phase writes its progress as a task event at most this often."
    )
    event_poll_seconds: float = Field(
        default=0.5, gt=0, description="How often the API's event stream looks for a task's new events."
    )
    max_new_tokens: int = Field(default=32, ge=1, description="Tokens an evaluated answer may run to.")
    training_precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description=(
            "What a model computes in when it trains (and when the evaluation takes the training split's loss): "
            "bf16 autocast or fp32; auto is bf16 where the device multiplies bf16 natively (a CUDA GPU with bf16, a "
            "CPU with AVX512-BF16 or AMX) and fp32 elsewhere (ml.precision)."
        ),
    )
    inference_precision: Literal["auto", "bf16", "fp32"] = Field(
        default="fp32",
        description=(
            "What a model computes in when it answers: in evaluations, the promotion gate, suites and serving, so "
            "that a version is served as it was evaluated. fp32 by default: bf16 answers changed more verdicts "
            "than bf16 training did (bench/training_levers, precision)."
        ),
    )
    generation_batch_size: int = Field(
        default=48, ge=1, description="Prompts decoded together when evaluating and when generating examples."
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not (self.grade_excellent >= self.grade_good >= self.grade_acceptable):
            raise ValueError("grade thresholds must satisfy excellent >= good >= acceptable")
        if self.split_feedback_fraction + self.split_test_fraction > 0.8:
            raise ValueError("feedback + test fractions must leave at least 20% for training")
        weights = (
            self.score_weight_exact_match,
            self.score_weight_token_f1,
            self.score_weight_bleu,
            self.score_weight_rouge_l,
        )
        if sum(weights) <= 0:
            raise ValueError("at least one score weight must be positive")
        return self

    def worker_metrics_port_for(self, pool: str) -> int:
        """The port a pool's worker serves its metrics on (0: none)."""
        return WORKER_METRICS_PORTS[pool] if self.worker_metrics_port is None else self.worker_metrics_port

    def check_secret(self) -> None:
        """Refuse to serve outside development with the default or a weak signing secret."""
        if self.environment == "development":
            return
        if (
            self.secret_key == DEFAULT_SECRET_KEY
            or len(self.secret_key) < MIN_SECRET_LENGTH
            or len(set(self.secret_key)) < 10
        ):
            raise ValueError(
                f"WLOPS_SECRET_KEY must be set to a random secret of at least {MIN_SECRET_LENGTH} characters when "
                f"WLOPS_ENVIRONMENT={self.environment} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'wlops.db').resolve()}"

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.temporal_ui_port}"

    @property
    def object_store_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache or self.data_dir / "model-cache"


SETTINGS_DOC_COMMAND = "wlops settings-doc --write docs/settings.md"


def settings_markdown() -> str:
    """docs/settings.md: each field of `Settings` with its environment variable, type, limits, default, description."""
    lines = [
        "# Settings",
        "",
        f"Generated from `core/settings.py` by `{SETTINGS_DOC_COMMAND}`; do not edit by hand",
        "(`tests/unit/test_docs.py` fails when this file is stale).",
        "",
        "Every WLOps process and the `wlops` command line read one pydantic-settings class, `core.settings.Settings`.",
        'Each field is the environment variable `WLOPS_<FIELD>`; a list is written as JSON (`\'["a", "b"]\'`).',
        "Tracing uses OpenTelemetry's standard `OTEL_` variables instead ([observability](observability.md)).",
        "",
        "| variable | field | type | default | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        # pydantic types default_factory as taking the validated data or not; these factories take none
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        kind = " ".join([_type_name(field.annotation), *_limits(field.metadata)])
        cells = [f"`WLOPS_{name.upper()}`", f"`{name}`", kind, _default_text(name, default), field.description or ""]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _type_name(annotation: object) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(f"`{arg}`" for arg in args)
    if origin in (Union, UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _limits(metadata: list[object]) -> list[str]:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    return [f"{sign} {getattr(item, key)}" for item in metadata for key, sign in signs.items() if hasattr(item, key)]


def _default_text(name: str, default: object) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, list):
        return f"`{json.dumps(default)}`"
    if isinstance(default, int) and "_bytes" in name:
        for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if default >= size and default % size == 0:
                return f"`{default}` ({default // size} {unit})"
    return f"`{default}`"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings` instead)."""
    return Settings()
