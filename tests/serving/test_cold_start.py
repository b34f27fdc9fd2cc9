"""A fresh `wlops serve` process, hit by 16 clients at once before it has loaded anything, answers every one: with
retrieval (the embedding model and the base model load in two threads at once) and without. Before the process's one
model-loading lock, the two loads interleaved transformers' global patches and every request of the process failed
("Cannot copy out of meta tensor"), then and ever after."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys

import httpx
import openai
import pytest
from temporalio.testing import ActivityEnvironment

from activities.context import ActivityContext
from activities.knowledge import KnowledgeActivities
from cli.users import create_user
from core.access import Role
from db.models import RegisteredModel, new_id
from schemas.workflow_io import BuildKnowledgeIndexInput
from services import knowledge as knowledge_service
from services.identity import token_pair
from testkit.api import TEST_PASSWORD
from testkit.polling import poll_until
from testkit.registry import add_version, point
from testkit.servers import free_port

CLIENTS = 16
QUESTIONS = [f"Which port does service {i} of FerroLink use?" for i in range(CLIENTS)]
GUIDE = "\n\n".join(
    f"## Service {i}\n\nService {i} of FerroLink listens on TCP port {7400 + i}." for i in range(CLIENTS)
)


@pytest.fixture
def stored_world(settings, tiny_model_dir, adapter_dirs):
    """A registered model whose version serves with retrieval from a built knowledge base, all in a data directory a
    serving process can open."""
    ctx = ActivityContext.from_settings(settings)
    owner = create_user(settings, "olga", TEST_PASSWORD, "serve-org", Role.OWNER)
    with ctx.sessions() as session:
        kb = knowledge_service.create_knowledge_base(
            session, settings, name="guide", description=None, org_id=owner.org.id, created_by=None
        )
        knowledge_service.keep_upload(
            ctx.store,
            knowledge_service.store_document(
                session,
                ctx.store,
                settings,
                kb,
                stream=io.BytesIO(GUIDE.encode()),
                filename="guide.md",
                created_by=None,
            ),
        )
        model = RegisteredModel(id=new_id(), org_id=owner.org.id, name="bot", base_model=tiny_model_dir)
        session.add(model)
        session.commit()
        kb_id = kb.id
    ActivityEnvironment().run(
        KnowledgeActivities(ctx).build_knowledge_index, BuildKnowledgeIndexInput(kb_id, owner.org.id)
    )
    version = add_version(ctx, model, 1, adapter_dirs / "v1")
    with ctx.sessions() as session:
        stored = session.merge(version)
        stored.serving_mode, stored.knowledge_base_id, stored.retrieval_top_k = "rag", kb_id, 2
        session.commit()
    point(ctx, model, "production", 1)
    token = token_pair(settings, owner.user, owner.org.id, Role.OWNER).access_token
    return settings, token, tiny_model_dir


def start_serving(settings, port: int, log, **environment: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "WLOPS_DATA_DIR": str(settings.data_dir),
        "WLOPS_MODEL_CACHE": str(settings.model_cache_dir),
        "WLOPS_SERVE_PORT": str(port),
        "WLOPS_SERVE_MAX_TOKENS": "64",
        **environment,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def wait_until_up(base: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll /healthz until it answers 200; a process that exits fails at once."""

    async with httpx.AsyncClient() as client:

        async def healthy() -> bool:
            assert process.poll() is None, "the serving process exited"
            try:
                return (await client.get(f"{base}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await poll_until(healthy, timeout=timeout, interval=0.2, what="the serving process up")


@pytest.mark.parametrize("retrieval", [True, False], ids=["with-retrieval", "closed-book"])
async def test_a_fresh_process_hit_by_16_clients_at_once_answers_every_one(stored_world, tmp_path, retrieval):
    settings, token, base_model = stored_world
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "serve.log", "wb") as log:
        process = start_serving(settings, port, log)
        try:
            await wait_until_up(base, process)
            health = httpx.get(f"{base}/healthz").json()
            # nothing loaded yet: the clients below find the process cold
            assert health == {
                "status": "ok",
                "models": {},
            }
            api = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0, timeout=300)
            # with retrieval: the version that serves from its knowledge base; closed book: the base model alone
            model = "bot" if retrieval else base_model
            requests = [
                api.chat.completions.create(
                    model=model, max_tokens=6, temperature=0, messages=[{"role": "user", "content": q}]
                )
                for q in QUESTIONS
            ]
            answers = await asyncio.gather(*requests, return_exceptions=True)
            failures = [a for a in answers if isinstance(a, Exception)]
            assert not failures, f"{len(failures)} of {CLIENTS} failed, e.g. {failures[0]!r}"
            if retrieval:
                assert all(a.model == "bot@1" and len(a.model_extra["sources"]) == 2 for a in answers)
            # and the process stays healthy: a later request answers too, and every model it loaded is ready
            again = await api.chat.completions.create(
                model=model, max_tokens=4, messages=[{"role": "user", "content": QUESTIONS[0]}]
            )
            assert again.choices[0].finish_reason in ("stop", "length")
            health = httpx.get(f"{base}/healthz").json()
            assert health["status"] == "ok" and {s["state"] for s in health["models"].values()} == {"ready"}, health
            assert (
                base_model in health["models"]
                and any(name.startswith("embeddings:") for name in health["models"]) == retrieval
            )
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    assert "Cannot copy out of meta tensor" not in (tmp_path / "serve.log").read_text(errors="replace")


async def test_readiness_warms_the_named_base_models_and_reports_one_that_cannot_load(
    settings, tiny_model_dir, tmp_path
):
    """`WLOPS_SERVE_WARM_MODELS` loads base models as the process starts: /readyz answers 503 until each is ready. A
    model that cannot load keeps it 503 and /healthz degraded, both naming the error and when it is tried again."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "serve.log", "wb") as log:
        for warm, ready in (([tiny_model_dir], True), ([tiny_model_dir, str(broken)], False)):
            process = start_serving(settings, port, log, WLOPS_SERVE_WARM_MODELS=json.dumps(warm))
            try:
                await wait_until_up(base, process)
                async with httpx.AsyncClient() as client:
                    readiness = await poll_until(
                        lambda: client.get(f"{base}/readyz"),
                        lambda r, last=warm[-1]: (
                            r.status_code == 200 or r.json()["models"].get(last, {}).get("state") == "failed"
                        ),
                        timeout=120,
                        interval=0.2,
                        what="the warm models loaded or failed",
                    )
                health = httpx.get(f"{base}/healthz").json()
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
            assert readiness.json()["models"][tiny_model_dir]["state"] == "ready"
            if ready:
                assert (
                    readiness.status_code == 200 and readiness.json()["status"] == "ready" and health["status"] == "ok"
                )
            else:
                failed = readiness.json()["models"][str(broken)]
                assert readiness.status_code == 503 and readiness.json()["status"] == "not_ready"
                assert failed["failures"] >= 1 and failed["error"] and failed["retry_in_seconds"] >= 0
                assert health["status"] == "degraded" and health["models"][str(broken)]["state"] in (
                    "failed",
                    "loading",
                )
