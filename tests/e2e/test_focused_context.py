"""A task whose passages are cut to the statements nearest each question (`context_statements`): it trains and is
evaluated on the cut passages, its version keeps the setting, and serving asks it the same way."""

from __future__ import annotations

import json

from activities.context import ActivityContext
from ml.examples import examples_from_jsonl
from ml.generation import statements
from serving.app import create_serving_app
from storage.object_store import get_bytes
from testkit.api import (
    anonymous_client,
    api_client,
    upload,
    wait_for_knowledge_base,
    wait_until_done,
    with_temporal,
)
from testkit.documents import write_dataset, write_knowledge
from testkit.model import TINY_HYPERPARAMETERS
from testkit.phases import running_workers
from testkit.suites import wait_for_run


async def test_a_task_with_focused_contexts_trains_is_evaluated_and_served_on_the_same_cut_passages(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    # serving asks a base model with as many passages as the version: the prompts differ only by the cut
    settings = with_temporal(settings, temporal_env, knowledge_settle_seconds=0.3, serve_retrieval_top_k=2)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        body = {"task_name": "focused", "model_name": tiny_model_dir, "dataset_id": dataset["dataset_id"]}
        without_kb = await api.post("/api/v1/tasks/standard", json={**body, "context_statements": 1})
        assert without_kb.status_code == 422 and "context_statements" in without_kb.json()["detail"]
        assert (await api.post("/api/v1/tasks/standard", json={**body, "context_statements": 0})).status_code == 422
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "services"})).json()["knowledge_base_id"]
        for path in write_knowledge(tmp_path / "kb"):
            files = {"file": (path.name, path.read_bytes())}
            assert (await api.post(f"/api/v1/knowledge-bases/{kb_id}/documents", files=files)).status_code == 202
        await wait_for_knowledge_base(api, kb_id)
        created = await api.post(
            "/api/v1/tasks/standard",
            json={
                **body,
                "knowledge_base_id": kb_id,
                "retrieval_top_k": 2,
                "context_statements": 1,
                "hyperparameters": {**TINY_HYPERPARAMETERS, "max_seq_length": 320},
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["context_statements"] == 1
        task_id = created.json()["task_id"]
        await api.post(f"/api/v1/tasks/{task_id}/start")
        task = await wait_until_done(api, task_id)
        assert task["status"] == "COMPLETED", task["error"]
        version = (await api.get("/api/v1/models/focused/versions/1")).json()
        contexts = json.loads(get_bytes(ctx.store, f"optimized/{task_id}-opt1/contexts.json"))["examples"]
        asked = next(
            e.question
            for e in examples_from_jsonl(get_bytes(ctx.store, f"optimized/{task_id}-opt1/train.jsonl"))
            if e.context
        )
        chat = {"max_tokens": 4, "messages": [{"role": "user", "content": asked}]}
        async with anonymous_client(
            create_serving_app(settings), {"Authorization": api.headers["authorization"]}
        ) as served:
            focused = await served.post("/v1/chat/completions", json={**chat, "model": "focused@1"})
            whole = await served.post(  # the same passages, uncut, through the base model
                "/v1/chat/completions",
                json={**chat, "model": tiny_model_dir, "knowledge_base_id": kb_id},
            )
        # a suite case with the knowledge base is asked the version's way too
        case = {
            "id": "asked",
            "prompt": asked,
            "knowledge_base_id": kb_id,
            "checks": [{"type": "regex", "pattern": "."}],
        }
        assert (await api.post("/api/v1/suites", json={"name": "cut", "cases": [case]})).status_code == 201
        started = await api.post("/api/v1/suites/cut/runs", json={"model": "focused@1"})
        assert started.status_code == 202, started.text
        suite_run = await wait_for_run(api, started.headers["location"])

    train = examples_from_jsonl(get_bytes(ctx.store, f"optimized/{task_id}-opt1/train.jsonl"))
    assert train and all(len(e.context) == 1 for e in train if e.context)
    assert all(len(statements(e.context[0])) == 1 for e in train if e.context)  # one statement, not a chunk
    assert all(len(c["context"]) == 1 for c in contexts.values())  # evaluated on the cut passages
    assert all(c["chunk_ids"] for c in contexts.values())  # the chunks they came from are kept for the sources
    assert version["context_statements"] == 1 and version["retrieval_top_k"] == 2
    assert focused.status_code == 200 and whole.status_code == 200, (focused.text, whole.text)
    assert len(focused.json()["sources"]) == 2  # both retrieved chunks are named as sources
    # serving asked the version with one statement: a far shorter prompt than the uncut passages make
    assert focused.json()["usage"]["prompt_tokens"] < whole.json()["usage"]["prompt_tokens"]
    assert suite_run["status"] == "COMPLETED", suite_run["error"]
    (result,) = suite_run["results"]
    assert len(result["passages"]) == 1 and len(statements(result["passages"][0])) == 1
