"""The API as a test drives it: signed-in clients over ASGI, uploads, and waits on a task or a gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from cli.users import create_user
from core.access import Role
from core.settings import Settings
from services.identity import token_pair
from testkit.polling import poll_until

TEST_PASSWORD = "correct horse battery staple"


def with_temporal(settings: Settings, temporal_env: WorkflowEnvironment, **changes: Any) -> Settings:
    """`settings` pointed at the test session's Temporal server (and with `changes`)."""
    return settings.model_copy(
        update={"temporal_address": temporal_env.client.service_client.config.target_host, **changes}
    )


def api_client(
    settings: Settings, username: str = "tester", org: str = "test-org", role: Role = Role.OWNER
) -> httpx.AsyncClient:
    """The API over ASGI, signed in as `username` with `role` in `org` (both created if needed)."""
    return client_for(create_app(settings), settings, username, org, role)


def client_for(app: FastAPI, settings: Settings, username: str, org: str, role: Role) -> httpx.AsyncClient:
    setup = create_user(settings, username, TEST_PASSWORD, org, role)
    tokens = token_pair(settings, setup.user, setup.org.id, role)
    return anonymous_client(app, {"Authorization": f"Bearer {tokens.access_token}"})


def anonymous_client(app: FastAPI, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wlops", headers=headers or {})


async def upload(api: httpx.AsyncClient, path: Path, name: str = "e2e") -> dict:
    response = await api.post("/api/v1/datasets", files={"file": (path.name, path.read_bytes())}, data={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def wait_until_done(api: httpx.AsyncClient, task_id: str, timeout: float = 300) -> dict:
    """Poll the task until it has ended (COMPLETED, FAILED or CANCELLED)."""

    async def task() -> dict:
        return (await api.get(f"/api/v1/tasks/{task_id}")).json()

    return await poll_until(
        task,
        lambda t: t["status"] in ("COMPLETED", "FAILED", "CANCELLED"),
        timeout=timeout,
        interval=0.3,
        what=f"task {task_id} ended",
    )


async def wait_for_gate(api: httpx.AsyncClient, location: str, timeout: float = 300) -> dict:
    """Poll a promotion gate until it has decided (or failed)."""

    async def gate() -> dict:
        return (await api.get(location)).json()

    return await poll_until(
        gate, lambda g: g["status"] != "EVALUATING", timeout=timeout, interval=0.2, what="the gate decided"
    )


async def wait_for_knowledge_base(api: httpx.AsyncClient, kb_id: str, version: int = 1, timeout: float = 120) -> dict:
    """Poll a knowledge base until it is READY at `version` or later; a failed build fails at once."""

    async def kb() -> dict:
        shown = (await api.get(f"/api/v1/knowledge-bases/{kb_id}")).json()
        assert shown["status"] != "BUILD_FAILED", shown
        return shown

    return await poll_until(
        kb,
        lambda shown: shown["status"] == "READY" and shown["version"] >= version,
        timeout=timeout,
        interval=0.2,
        what=f"knowledge base {kb_id} READY at version {version}",
    )


async def create_task(api: httpx.AsyncClient, mode: str, body: dict[str, Any]) -> dict[str, Any]:
    """A task created through the API (`mode`: standard | continuous), as the API returns it."""
    response = await api.post(f"/api/v1/tasks/{mode}", json=body)
    assert response.status_code == 201, response.text
    return response.json()
