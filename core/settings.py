"""All WLOps settings in one pydantic-settings object, read from `WLOPS_` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_QUEUE_WORKFLOWS = "wlops-workflows"
TASK_QUEUE_BOOKKEEPING = "wlops-bookkeeping"
TASK_QUEUE_OPTIMIZE = "wlops-optimize"
TASK_QUEUE_TRAIN = "wlops-train"
TASK_QUEUE_EVALUATE = "wlops-evaluate"

# Which task queues each worker pool polls. `control` runs workflow code and the small
# bookkeeping activities (database projection, compensation); the others run one phase each.
WORKER_POOL_QUEUES: dict[str, tuple[str, ...]] = {
    "control": (TASK_QUEUE_WORKFLOWS, TASK_QUEUE_BOOKKEEPING),
    "optimize": (TASK_QUEUE_OPTIMIZE,),
    "train": (TASK_QUEUE_TRAIN,),
    "evaluate": (TASK_QUEUE_EVALUATE,),
}
WORKER_POOLS = tuple(WORKER_POOL_QUEUES)
# `all` runs every pool in one process (embedded use and tests).
POOL_TASK_QUEUES: dict[str, tuple[str, ...]] = {**WORKER_POOL_QUEUES, "all": tuple(q for queues in WORKER_POOL_QUEUES.values() for q in queues)}


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to `WLOPS_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="WLOPS_", extra="ignore")

    data_dir: Path = Field(default=Path(".wlops"), description="Root for the embedded stack's files.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under data_dir if unset.")

    temporal_address: str | None = Field(default=None, description="Existing Temporal cluster; embedded dev server if unset.")
    temporal_namespace: str = "default"
    temporal_port: int = 7233
    temporal_ui_port: int = 8233

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    s3_endpoint: str | None = Field(default=None, description="host:port of an S3-compatible server; local directory if unset.")
    s3_access_key: str = "minioadmin"
    s3_secret_key: str = "minioadmin"
    s3_bucket: str = "wlops"
    s3_secure: bool = False

    model_cache: Path | None = Field(default=None, description="Where de-quantized base models are cached; data_dir/model-cache if unset.")

    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    default_owner: str = Field(default="local", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Owner of resources until access control lands.")

    # Worker concurrency per pool: training holds a whole model, so one at a time by default.
    optimize_concurrency: int = Field(default=2, ge=1)
    train_concurrency: int = Field(default=1, ge=1)
    evaluate_concurrency: int = Field(default=1, ge=1)
    bookkeeping_concurrency: int = Field(default=8, ge=1)

    # Evaluation: weights of the overall score and grade thresholds on it.
    score_weight_exact_match: float = Field(default=0.1, ge=0)
    score_weight_token_f1: float = Field(default=0.4, ge=0)
    score_weight_bleu: float = Field(default=0.2, ge=0)
    score_weight_rouge_l: float = Field(default=0.3, ge=0)
    grade_excellent: float = Field(default=0.8, ge=0, le=1)
    grade_good: float = Field(default=0.6, ge=0, le=1)
    grade_acceptable: float = Field(default=0.4, ge=0, le=1)

    # Data splits (fractions of the cleaned dataset) and their minimum sizes.
    split_feedback_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    split_test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    split_min_examples: int = Field(default=4, ge=1)

    heartbeat_timeout_seconds: int = Field(default=60, ge=5, description="A worker silent this long is presumed dead; its activity is retried.")
    activity_max_attempts: int = Field(default=3, ge=1)
    checkpoint_every_steps: int = Field(default=10, ge=1)
    max_new_tokens: int = Field(default=32, ge=1)
    generation_batch_size: int = Field(default=48, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if not (self.grade_excellent >= self.grade_good >= self.grade_acceptable):
            raise ValueError("grade thresholds must satisfy excellent >= good >= acceptable")
        if self.split_feedback_fraction + self.split_test_fraction > 0.8:
            raise ValueError("feedback + test fractions must leave at least 20% for training")
        weights = (self.score_weight_exact_match, self.score_weight_token_f1, self.score_weight_bleu, self.score_weight_rouge_l)
        if sum(weights) <= 0:
            raise ValueError("at least one score weight must be positive")
        return self

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


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings` instead)."""
    return Settings()
