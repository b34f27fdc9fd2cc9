"""Helpers for end-to-end runs: a generated dataset, the API over ASGI, and polling."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from api.main import create_app
from cli.users import create_user
from core.access import Role
from core.settings import Settings
from services.identity import token_pair

TEST_PASSWORD = "correct horse battery staple"

TOPICS = [
    "backup",
    "sync",
    "restore",
    "console",
    "agent",
    "vault",
    "quota",
    "license",
    "audit",
    "mirror",
    "report",
    "schedule",
]


def write_dataset(path: Path, n_topics: int = 12) -> Path:
    """Question/answer pairs about a made-up product: 4 phrasings of 12 facts, distinct enough not to be near duplicates."""
    templates = [
        ("What port does the {t} service listen on?", "The {t} service listens on port {p}."),
        ("Which command starts a {t} job?", "Run 'ferro {t} start' to start a {t} job."),
        ("Where is the {t} log file kept?", "The {t} log is kept in /var/log/ferro/{t}.log."),
        ("How long are {t} records retained by default?", "{T} records are retained for {d} days by default."),
    ]
    rows = []
    for i, topic in enumerate(TOPICS[:n_topics]):
        for question, answer in templates:
            values = {"t": topic, "T": topic.capitalize(), "p": 7400 + i, "d": 10 + 5 * i}
            rows.append({"question": question.format(**values), "answer": answer.format(**values)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_knowledge(folder: Path, n_topics: int = 12) -> list[Path]:
    """The facts behind `write_dataset` as documents, three topics to a Markdown file with a section per topic."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, n_topics, 3):
        lines = [f"# Ferro services, part {start // 3 + 1}", ""]
        for i, topic in enumerate(TOPICS[start : min(start + 3, n_topics)], start=start):
            lines += [
                f"## The {topic} service",
                "",
                f"- The {topic} service listens on port {7400 + i}.",
                f"- Run 'ferro {topic} start' to start a {topic} job.",
                f"- The {topic} log is kept in /var/log/ferro/{topic}.log.",
                f"- {topic.capitalize()} records are retained for {10 + 5 * i} days by default.",
                "",
            ]
        path = folder / f"services-{start // 3 + 1}.md"
        path.write_text("\n".join(lines))
        paths.append(path)
    return paths


def api_client(
    settings: Settings, username: str = "tester", org: str = "test-org", role: Role = Role.OWNER
) -> httpx.AsyncClient:
    """The API over ASGI, signed in as `username` with `role` in `org` (both created if needed)."""
    return client_for(create_app(settings), settings, username, org, role)


def client_for(app, settings: Settings, username: str, org: str, role: Role) -> httpx.AsyncClient:
    setup = create_user(settings, username, TEST_PASSWORD, org, role)
    tokens = token_pair(settings, setup.user, setup.org.id, role)
    return anonymous_client(app, {"Authorization": f"Bearer {tokens.access_token}"})


def anonymous_client(app, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wlops", headers=headers or {})


async def upload(api: httpx.AsyncClient, path: Path, name: str = "e2e") -> dict:
    response = await api.post("/api/v1/datasets", files={"file": (path.name, path.read_bytes())}, data={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def wait_until_done(api: httpx.AsyncClient, task_id: str, timeout: float = 300) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        task = (await api.get(f"/api/v1/tasks/{task_id}")).json()
        if task["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return task
        if loop.time() > deadline:
            raise TimeoutError(f"task {task_id} still {task['status']} after {timeout}s")
        await asyncio.sleep(0.3)


async def wait_for_gate(api: httpx.AsyncClient, location: str, timeout: float = 300) -> dict:
    """Poll a promotion gate until it has decided (or failed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (gate := (await api.get(location)).json())["status"] == "EVALUATING":
        if loop.time() > deadline:
            raise TimeoutError(f"the gate is still evaluating: {gate}")
        await asyncio.sleep(0.2)
    return gate
