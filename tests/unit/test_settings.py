"""Settings: defaults, WLOPS_ environment variables, derived values and validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import (
    DEFAULT_SECRET_KEY,
    POOL_TASK_QUEUES,
    TASK_QUEUE_BOOKKEEPING,
    TASK_QUEUE_EVALUATE,
    TASK_QUEUE_KNOWLEDGE,
    TASK_QUEUE_OPTIMIZE,
    TASK_QUEUE_TRAIN,
    TASK_QUEUE_WORKFLOWS,
    Settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No WLOPS_ variable of the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("WLOPS_"):
            monkeypatch.delenv(name)


def test_defaults():
    s = Settings()
    assert s.data_dir == Path(".wlops")
    assert s.database_url is None
    assert s.temporal_address is None
    assert s.temporal_namespace == "default"
    assert (s.temporal_port, s.temporal_ui_port) == (7233, 8233)
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)
    assert s.s3_endpoint is None
    assert s.s3_bucket == "wlops"
    assert s.s3_secure is False
    assert s.max_upload_bytes == 50 * 1024 * 1024
    assert (s.environment, s.access_token_minutes, s.refresh_token_days) == ("development", 15, 7)
    assert (s.dev_username, s.dev_org) == ("dev", "dev")
    assert (s.max_running_tasks_per_org, s.max_storage_bytes_per_org) == (2, 1024**3)
    assert (s.optimize_concurrency, s.train_concurrency, s.evaluate_concurrency, s.bookkeeping_concurrency) == (
        2,
        1,
        1,
        8,
    )
    assert (s.score_weight_exact_match, s.score_weight_token_f1, s.score_weight_bleu, s.score_weight_rouge_l) == (
        0.1,
        0.4,
        0.2,
        0.3,
    )
    assert (s.grade_excellent, s.grade_good, s.grade_acceptable) == (0.8, 0.6, 0.4)
    assert (s.split_feedback_fraction, s.split_test_fraction, s.split_min_examples) == (0.15, 0.15, 4)
    assert s.heartbeat_timeout_seconds == 60
    assert s.activity_max_attempts == 3


def test_environment_variables_override_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("WLOPS_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WLOPS_TEMPORAL_PORT", "7999")
    monkeypatch.setenv("WLOPS_S3_ENDPOINT", "minio:9000")
    monkeypatch.setenv("WLOPS_S3_SECURE", "true")
    monkeypatch.setenv("WLOPS_TRAIN_CONCURRENCY", "3")
    monkeypatch.setenv("WLOPS_GRADE_GOOD", "0.65")
    monkeypatch.setenv("WLOPS_MAX_RUNNING_TASKS_PER_ORG", "5")
    s = Settings()
    assert s.data_dir == tmp_path / "state"
    assert s.temporal_port == 7999
    assert s.resolved_temporal_address == "127.0.0.1:7999"
    assert s.s3_endpoint == "minio:9000"
    assert s.s3_secure is True
    assert s.train_concurrency == 3
    assert s.grade_good == 0.65
    assert s.max_running_tasks_per_org == 5


def test_unprefixed_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("TEMPORAL_PORT", "1234")
    monkeypatch.setenv("API_PORT", "1234")
    s = Settings()
    assert s.temporal_port == 7233
    assert s.api_port == 8000


def test_bad_environment_value_is_a_validation_error(monkeypatch):
    monkeypatch.setenv("WLOPS_TEMPORAL_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()


def test_resolved_database_url_is_sqlite_under_data_dir(tmp_path):
    s = Settings(data_dir=tmp_path / "d")
    expected = (tmp_path / "d" / "wlops.db").resolve()
    assert s.resolved_database_url == f"sqlite:///{expected}"
    assert s.resolved_database_url.startswith("sqlite:////")  # absolute path: four slashes


def test_resolved_database_url_from_relative_data_dir_is_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = Settings(data_dir=Path("rel"))
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'rel' / 'wlops.db'}"


def test_explicit_database_url_wins(monkeypatch):
    monkeypatch.setenv("WLOPS_DATABASE_URL", "postgresql+psycopg://u:p@db:5432/wlops")
    assert Settings().resolved_database_url == "postgresql+psycopg://u:p@db:5432/wlops"


def test_temporal_address_and_urls():
    assert Settings().resolved_temporal_address == "127.0.0.1:7233"
    assert Settings(temporal_address="temporal:7233").resolved_temporal_address == "temporal:7233"
    assert Settings(temporal_ui_port=9000).temporal_ui_url == "http://127.0.0.1:9000"


def test_directories_under_data_dir(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.object_store_dir == tmp_path / "objects"
    assert s.model_cache_dir == tmp_path / "model-cache"


@pytest.mark.parametrize(
    "grades",
    [
        {"grade_excellent": 0.5, "grade_good": 0.6},
        {"grade_good": 0.3, "grade_acceptable": 0.4},
        {"grade_excellent": 0.3, "grade_good": 0.35, "grade_acceptable": 0.2},
    ],
)
def test_grade_thresholds_must_be_ordered(grades):
    with pytest.raises(ValidationError, match="excellent >= good >= acceptable"):
        Settings(**grades)


def test_equal_grade_thresholds_are_allowed():
    s = Settings(grade_excellent=0.5, grade_good=0.5, grade_acceptable=0.5)
    assert s.grade_good == 0.5


def test_grade_threshold_out_of_range():
    with pytest.raises(ValidationError):
        Settings(grade_excellent=1.5)


def test_feedback_and_test_fractions_must_leave_training_data():
    with pytest.raises(ValidationError, match="at least 20% for training"):
        Settings(split_feedback_fraction=0.45, split_test_fraction=0.45)
    ok = Settings(split_feedback_fraction=0.3, split_test_fraction=0.3)
    assert ok.split_feedback_fraction + ok.split_test_fraction == pytest.approx(0.6)


@pytest.mark.parametrize("fraction", [0, 0.5, -0.1])
def test_single_fraction_bounds(fraction):
    with pytest.raises(ValidationError):
        Settings(split_test_fraction=fraction)


def test_all_score_weights_zero_is_rejected():
    with pytest.raises(ValidationError, match="score weight"):
        Settings(score_weight_exact_match=0, score_weight_token_f1=0, score_weight_bleu=0, score_weight_rouge_l=0)


def test_development_mode_accepts_the_default_secret():
    Settings().check_secret()


@pytest.mark.parametrize(
    "secret", [DEFAULT_SECRET_KEY, "short-secret", "a" * 64, "abababababababababababababababababab"]
)
def test_production_refuses_a_default_or_weak_secret(secret):
    with pytest.raises(ValueError, match="WLOPS_SECRET_KEY"):
        Settings(environment="production", secret_key=secret).check_secret()


def test_production_accepts_a_strong_secret():
    Settings(environment="production", secret_key="f3Kq9-xWz81LmN0pR_tYv7uB2cD4eG6h").check_secret()


def test_an_unknown_environment_is_rejected():
    with pytest.raises(ValidationError):
        Settings(environment="staging")


@pytest.mark.parametrize(
    "field", ["max_upload_bytes", "train_concurrency", "activity_max_attempts", "split_min_examples"]
)
def test_positive_integer_fields_reject_zero(field):
    with pytest.raises(ValidationError):
        Settings(**{field: 0})


def test_heartbeat_timeout_minimum():
    with pytest.raises(ValidationError):
        Settings(heartbeat_timeout_seconds=4)
    assert Settings(heartbeat_timeout_seconds=5).heartbeat_timeout_seconds == 5


def test_pool_task_queues():
    assert POOL_TASK_QUEUES["control"] == (TASK_QUEUE_WORKFLOWS, TASK_QUEUE_BOOKKEEPING)
    assert POOL_TASK_QUEUES["optimize"] == (TASK_QUEUE_OPTIMIZE, TASK_QUEUE_KNOWLEDGE)
    assert POOL_TASK_QUEUES["train"] == (TASK_QUEUE_TRAIN,)
    assert POOL_TASK_QUEUES["evaluate"] == (TASK_QUEUE_EVALUATE,)
    four = ("control", "optimize", "train", "evaluate")
    union = {q for pool in four for q in POOL_TASK_QUEUES[pool]}
    assert set(POOL_TASK_QUEUES["all"]) == union
    assert len(POOL_TASK_QUEUES["all"]) == len(union) == 6  # no queue twice
    assert set(POOL_TASK_QUEUES) == {*four, "all"}
