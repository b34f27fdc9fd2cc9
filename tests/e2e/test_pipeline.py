"""End to end: the real API, real activities on real workers (one per task queue), a real Temporal server."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select

from activities.context import ActivityContext
from db.models import Dataset, TaskEvent
from ml.examples import example_key, examples_from_jsonl
from ml.optimizer import Splits, find_leaks
from serving.app import create_serving_app
from storage import keys
from storage.object_store import get_bytes, get_dir
from testkit.api import (
    anonymous_client,
    api_client,
    create_task,
    upload,
    wait_for_gate,
    wait_for_knowledge_base,
    wait_until_done,
    with_temporal,
)
from testkit.documents import write_dataset, write_knowledge
from testkit.model import TINY_HYPERPARAMETERS
from testkit.phases import running_workers
from testkit.polling import poll_until


def assert_no_leakage(ctx: ActivityContext, task_id: str, splits_key: str) -> int:
    """No feedback or test example, nor a near copy or rewrite of one, is in any training set of the task."""
    splits = Splits.from_json(json.loads(get_bytes(ctx.store, splits_key)))
    held_out_keys = {example_key(e.question, e.answer) for e in splits.held_out()}
    with ctx.sessions() as session:
        datasets = session.scalars(select(Dataset).where(Dataset.task_id == task_id, Dataset.is_optimized)).all()
    for dataset in datasets:
        train = examples_from_jsonl(get_bytes(ctx.store, dataset.storage_key))
        assert not held_out_keys & {example_key(e.question, e.answer) for e in train}
        assert find_leaks(train, splits.held_out()) == []
    return len(datasets)


async def test_continuous_run_on_sqlite_and_local_storage(temporal_env, settings, tiny_model_dir, tmp_path):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        created = await api.post(
            "/api/v1/tasks/continuous",
            json={
                "taskName": "e2e continuous",
                "modelName": tiny_model_dir,
                "datasetId": dataset["dataset_id"],
                "hyperparameters": TINY_HYPERPARAMETERS,
                "maxIterations": 2,
            },
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        assert created.json()["status"] == "PENDING"
        assert (await api.post(f"/api/v1/tasks/{task_id}/start")).status_code == 202
        task = await wait_until_done(api, task_id)
        assert task["status"] == "COMPLETED", task["error"]
        executions = (await api.get(f"/api/v1/tasks/{task_id}/executions")).json()
        report = (await api.get(f"/api/v1/tasks/{task_id}/report")).json()
        listed = (await api.get("/api/v1/tasks", params={"status": "COMPLETED"})).json()
        answers = await api.get(f"/api/v1/tasks/{task_id}/iterations/2/answers", params={"limit": 3})
        wrong = await api.get(
            f"/api/v1/tasks/{task_id}/iterations/2/answers",
            params={"verdict": "wrong", "split": "feedback", "limit": 200},
        )
        base = await api.get(f"/api/v1/tasks/{task_id}/iterations/0/answers", params={"offset": 2, "limit": 2})
        missing = await api.get(f"/api/v1/tasks/{task_id}/iterations/3/answers")
        other_mode = await api.get(f"/api/v1/tasks/{task_id}/iterations/1/answers", params={"mode": "rag"})

        # the iteration the task keeps (its best on the feedback split) was registered as version 1 of the model named
        # after the task; the other iteration joins as version 2
        kept = report["final"]["iteration"]
        other = 3 - kept
        final = (await api.get("/api/v1/models/e2e-continuous/versions/1")).json()
        assert (final["task_id"], final["iteration"], final["adapter_key"]) == (
            task_id,
            kept,
            keys.model_prefix(task_id, kept) + "adapter/",
        )
        assert (
            await api.post("/api/v1/models/e2e-continuous/versions", json={"task_id": task_id, "iteration": other})
        ).json()["version"] == 2
        # the gate asks the same test questions again, for real: it reproduces the task's own scores
        first_gate = await wait_for_gate(
            api, (await api.post("/api/v1/models/e2e-continuous/versions/1/promote", json={})).headers["location"]
        )
        second_gate = await wait_for_gate(
            api, (await api.post("/api/v1/models/e2e-continuous/versions/2/promote", json={})).headers["location"]
        )
        tar = await api.get("/api/v1/models/e2e-continuous/versions/1/adapter")

    assert task["current_iteration"] == 2 and task["latest_score"] is not None and task["baseline_score"] is not None
    assert task_id in [t["task_id"] for t in listed["items"]]
    assert [(e["iteration"], e["phase"], e["status"]) for e in executions] == [
        (i, phase, "COMPLETED") for i in (1, 2) for phase in ("OPTIMIZING", "TRAINING", "EVALUATING")
    ]
    # every score says its split; the headline is the test split's
    assert report["final"]["split"] == "test" and [it["iteration"] for it in report["iterations"]] == [1, 2]
    assert set(report["iterations"][0]["scores"]) == {"feedback", "test"}
    assert Path(report["markdown_path"]).read_text().startswith("# Fine-tuning report")
    # every evaluation's answers can be read back, each judged by the fact checks derived from its reference, wrong
    # first
    page = answers.json()
    assert answers.status_code == 200 and (page["iteration"], page["split"], page["mode"], page["limit"]) == (
        2,
        "test",
        "closed_book",
        3,
    )
    assert (
        page["total"] == page["scores"]["judged"] == report["iterations"][1]["scores"]["test"]["judged"] > 3
        and len(page["items"]) == 3
    )
    assert page["scores"]["fact_accuracy"] == report["iterations"][1]["scores"]["test"]["fact_accuracy"]
    verdicts = [item["right"] for item in page["items"]]
    assert verdicts == sorted(verdicts) and all(
        item["checks"] and item["checks"][0]["check"]["derived"] for item in page["items"]
    )
    assert all(item["right"] == all(c["passed"] for c in item["checks"]) for item in page["items"])
    assert wrong.json()["total"] == wrong.json()["scores"]["judged"] - wrong.json()["scores"]["right"]
    assert all(item["right"] is False for item in wrong.json()["items"])
    assert (
        base.status_code == 200
        and base.json()["offset"] == 2
        and len(base.json()["items"]) == min(2, base.json()["total"] - 2)
    )
    assert missing.status_code == 404 and "no evaluation of iteration 3" in missing.json()["detail"]
    assert other_mode.status_code == 422 and "evaluated in closed_book, not rag" in other_mode.json()["detail"]
    # lineage: iteration 2's training data was made for iteration 1's bad cases, and the evaluation follows them up
    followup = report["iterations"][1]["bad_case_followup"]
    assert followup and any(f["targeted_training_examples"] for f in followup)
    with ctx.sessions() as session:
        second = session.get(Dataset, f"{task_id}-opt2")
        assert second.is_optimized and second.source_dataset_id == dataset["dataset_id"]
        assert second.optimization_log["upweighted"] > 0 and second.optimization_log["added"] > 0
    train2 = examples_from_jsonl(get_bytes(ctx.store, second.storage_key))
    rewrites = [e for e in train2 if e.origin == "rewrite"]
    assert rewrites and all(c["bad_case_id"] and c["action"] == "rewrite" for e in rewrites for c in e.lineage)
    assert assert_no_leakage(ctx, task_id, f"optimized/{task_id}-opt1/splits.json") == 2
    # the real phases wrote their progress as the task's events: training steps with loss and speed, evaluation counts
    with ctx.sessions() as session:
        progress = [
            e.data
            for e in session.scalars(
                select(TaskEvent).where(TaskEvent.task_id == task_id, TaskEvent.kind == "progress")
            )
        ]
    training = [p for p in progress if p["phase"] == "TRAINING" and p.get("step")]
    assert {p["iteration"] for p in training} == {1, 2} and all(
        p["loss"] > 0 and p["tokens_per_second"] > 0 for p in training
    )
    assert any(p["phase"] == "EVALUATING" and p.get("total") and 0 < p["done"] <= p["total"] for p in progress)

    # the adapter is standard peft: it loads on the base model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = get_dir(ctx.store, task["latest_adapter_key"], tmp_path / "adapter")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)

    # the registry's adapter tar is that folder: it loads with peft as it is
    assert tar.status_code == 200 and tar.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        archive.extractall(tmp_path / "from-registry", filter="data")
    assert {p.name for p in (tmp_path / "from-registry").iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "from-registry")

    test_size = len(Splits.from_json(json.loads(get_bytes(ctx.store, f"optimized/{task_id}-opt1/splits.json"))).test)
    for gate in (first_gate, second_gate):
        assert gate["status"] in ("PROMOTED", "REFUSED") and gate["figures"]["mode"] == "closed_book", gate
        # one task: one locked test split
        assert gate["figures"]["pooled"]["questions"] == test_size and len(gate["figures"]["sets"]) == 1
    baseline_test, iterations = (
        report["baseline"]["scores"]["overall"],
        {it["iteration"]: it["scores"]["test"]["overall"] for it in report["iterations"]},
    )
    # the kept iteration is the one with the most feedback answers right (ties: the higher blended feedback score)
    feedback = {
        it["iteration"]: (it["scores"]["feedback"]["fact_accuracy"] or 0.0, it["scores"]["feedback"]["overall"])
        for it in report["iterations"]
    }
    assert feedback[kept] >= feedback[other]
    assert report["final"]["score"] == iterations[kept] and report["final"]["because"]
    assert first_gate["figures"]["pooled"]["scores"] == {"candidate": iterations[kept], "base": baseline_test}
    if first_gate["status"] == "PROMOTED":  # then v2 (the other iteration) was measured against v1 in production
        assert second_gate["figures"]["pooled"]["scores"] == {
            "candidate": iterations[other],
            "current": iterations[kept],
            "base": baseline_test,
        }


@pytest.mark.postgres
async def test_standard_run_on_postgresql_and_s3(
    temporal_env, settings, tiny_model_dir, tmp_path, postgres_url, s3_endpoint
):
    settings = with_temporal(
        settings,
        temporal_env,
        database_url=postgres_url,
        s3_endpoint=s3_endpoint,
        s3_access_key="test",
        s3_secret_key="test",
        s3_bucket="wlops-e2e",
    )
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        created = await create_task(
            api,
            "standard",
            {
                "task_name": "e2e standard",
                "model_name": tiny_model_dir,
                "dataset_id": dataset["dataset_id"],
                "hyperparameters": TINY_HYPERPARAMETERS,
            },
        )
        await api.post(f"/api/v1/tasks/{created['task_id']}/start")
        task = await wait_until_done(api, created["task_id"])
        report = (await api.get(f"/api/v1/tasks/{created['task_id']}/report")).json()
    assert task["status"] == "COMPLETED", task["error"]
    assert report["report_path"].startswith("s3://wlops-e2e/evaluations/")
    # stored under the organization's server-generated id, never a user-supplied name
    prefix = f"datasets/{dataset['org_id']}/{dataset['dataset_id']}/"
    assert len(dataset["org_id"]) == 32 and ctx.store.list(prefix) == [prefix + "data.jsonl"]
    assert ctx.store.list(f"models/{created['task_id']}/iter-1/adapter/")
    # checkpoints are removed once the adapter is saved
    assert ctx.store.list(f"models/{created['task_id']}/iter-1/checkpoint/") == []
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
    assert_no_leakage(ctx, created["task_id"], f"optimized/{created['task_id']}-opt1/splits.json")


@pytest.mark.real_model
async def test_standard_run_with_the_real_smollm2_weights(temporal_env, settings, tmp_path):
    # trained in bf16 (what `auto` picks on a CPU with AVX512-BF16), answered in fp32: the defaults' split, pinned
    settings = with_temporal(settings, temporal_env, max_new_tokens=24, training_precision="bf16")
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl", n_topics=8))
        created = await create_task(
            api,
            "standard",
            {
                "task_name": "real weights",
                "dataset_id": dataset["dataset_id"],
                "hyperparameters": {"max_steps": 2, "batch_size": 4, "max_seq_length": 96},
            },
        )
        assert created["model_name"] == "smollm2-135m-instruct"
        await api.post(f"/api/v1/tasks/{created['task_id']}/start")
        task = await wait_until_done(api, created["task_id"], timeout=600)
        report = (await api.get(f"/api/v1/tasks/{created['task_id']}/report")).json()
    assert task["status"] == "COMPLETED", task["error"]
    side = report["side_by_side"]
    assert side and all(row["base_answer"] and row["tuned_answer"] for row in side)
    assert report["iterations"][0]["training"]["steps"] == 2
    assert report["iterations"][0]["training"]["precision"] == "bf16"


async def test_a_continuous_run_with_a_knowledge_base_trains_with_passages_and_reports_both_modes(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env, knowledge_settle_seconds=0.3)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "services"})).json()["knowledge_base_id"]
        early = await api.post(
            "/api/v1/tasks/standard",
            json={
                "task_name": "too early",
                "model_name": tiny_model_dir,
                "dataset_id": dataset["dataset_id"],
                "knowledge_base_id": kb_id,
            },
        )
        assert early.status_code == 409 and "has no index yet" in early.json()["detail"]
        for path in write_knowledge(tmp_path / "kb"):
            assert (
                await api.post(
                    f"/api/v1/knowledge-bases/{kb_id}/documents", files={"file": (path.name, path.read_bytes())}
                )
            ).status_code == 202
        await wait_for_knowledge_base(api, kb_id)
        created = await api.post(
            "/api/v1/tasks/continuous",
            json={
                "task_name": "with passages",
                "model_name": tiny_model_dir,
                "dataset_id": dataset["dataset_id"],
                "knowledge_base_id": kb_id,
                "retrieval_top_k": 2,
                "hyperparameters": {**TINY_HYPERPARAMETERS, "max_seq_length": 320},
                "max_iterations": 2,
            },
        )
        assert created.status_code == 201, created.text
        assert (created.json()["knowledge_base_id"], created.json()["retrieval_top_k"]) == (kb_id, 2)
        task_id = created.json()["task_id"]
        await api.post(f"/api/v1/tasks/{task_id}/start")
        task = await wait_until_done(api, task_id)
        assert task["status"] == "COMPLETED", task["error"]
        report = (await api.get(f"/api/v1/tasks/{task_id}/report")).json()
        # the registered version serves with retrieval, and the gate measures it so: the same passages, the same scores
        version = (await api.get("/api/v1/models/with-passages/versions/1")).json()
        gate = await wait_for_gate(
            api, (await api.post("/api/v1/models/with-passages/versions/1/promote", json={})).headers["location"]
        )
        # and it answers with retrieval: the response names the passages it was given
        question = (
            Splits.from_json(json.loads(get_bytes(ctx.store, f"optimized/{task_id}-opt1/splits.json"))).test[0].question
        )
        async with anonymous_client(
            create_serving_app(settings), {"Authorization": api.headers["authorization"]}
        ) as served:
            answered = await served.post(
                "/v1/chat/completions",
                json={"model": "with-passages@1", "max_tokens": 8, "messages": [{"role": "user", "content": question}]},
            )
            searched = (
                await api.post(f"/api/v1/knowledge-bases/{kb_id}/search", json={"query": question, "top_k": 2})
            ).json()["results"]
        misread = (
            await api.get(f"/api/v1/tasks/{task_id}/iterations/2/answers", params={"verdict": "misread", "limit": 200})
        ).json()
        not_retrieved = (
            await api.get(
                f"/api/v1/tasks/{task_id}/iterations/2/answers", params={"verdict": "not_retrieved", "limit": 200}
            )
        ).json()
        in_use = await api.delete(f"/api/v1/knowledge-bases/{kb_id}")  # after the run

    # the headline is the retrieval-augmented test score; closed book is measured beside it, for the base model too
    assert report["final"]["mode"] == "rag"
    assert set(report["baseline"]["modes"]) == {"rag", "closed_book"}
    for iteration in report["iterations"]:
        assert set(iteration["modes"]) == {"rag", "closed_book"} and iteration["knowledge_base_version"] == 1
        assert iteration["scores"]["test"] == iteration["modes"]["rag"]["test"]
        test = iteration["retrieval"]["test"]
        assert test["k"] == 2 and test["known"] > 0 and 0 < test["recall_at_k"] <= 1 and test["mrr"] > 0
    assert Path(report["markdown_path"]).read_text().count("## Closed book and with retrieval") == 1
    # each wrong answer with passages is a misreading or a retrieval miss, by whether its passages state its answer;
    # closed book tells neither
    final_modes = report["iterations"][-1]["modes"]
    rag_test, closed_test = final_modes["rag"]["test"], final_modes["closed_book"]["test"]
    assert (misread["total"], not_retrieved["total"]) == (rag_test["reading_errors"], rag_test["retrieval_misses"])
    assert misread["total"] + not_retrieved["total"] > 0  # a tiny random model answers wrong
    assert all(a["right"] is False and a["answer_in_passages"] is True for a in misread["items"])
    assert all(a["right"] is False and a["answer_in_passages"] is False for a in not_retrieved["items"])
    assert closed_test["reading_errors"] is None and closed_test["retrieval_misses"] is None
    assert (
        version["serving_mode"],
        version["knowledge_base_id"],
        version["knowledge_base_version"],
        version["retrieval_top_k"],
    ) == ("rag", kb_id, 1, 2)
    assert version["scores"]["rag"]["test"] == report["final"]["score"] and set(version["scores"]) == {
        "rag",
        "closed_book",
    }
    assert gate["status"] in ("PROMOTED", "REFUSED") and gate["mode"] == "rag", gate
    assert gate["figures"]["pooled"]["scores"] == {
        "candidate": report["final"]["score"],
        "base": report["baseline"]["modes"]["rag"]["test"]["overall"],
    }
    assert answered.status_code == 200, answered.text
    sources = answered.json()["sources"]
    assert [s["chunk_id"] for s in sources] == [r["chunk_id"] for r in searched] and len(
        sources
    ) == 2  # the version's top-k, as trained
    assert all(s["document_id"] and s["filename"] and s["score"] > 0 for s in sources)

    train = examples_from_jsonl(get_bytes(ctx.store, f"optimized/{task_id}-opt1/train.jsonl"))
    assert all(len(e.context) == len(e.context_chunk_ids) == 2 for e in train)
    supported = [e for e in train if e.supporting_chunk_id]
    assert supported, "the answers' chunks are found in the knowledge base"
    with_oracle = [e for e in supported if e.supporting_chunk_id in e.context_chunk_ids]
    assert 0 < len(with_oracle) < len(supported)  # RAFT: the answer's chunk is in most prompts, not all
    assert {e.context_chunk_ids.index(e.supporting_chunk_id) for e in with_oracle} == {0, 1}  # and not always first
    # iteration 2 targets iteration 1's feedback bad cases with examples generated from the chunks they retrieve
    second = examples_from_jsonl(get_bytes(ctx.store, f"optimized/{task_id}-opt2/train.jsonl"))
    generated = [e for e in second if e.origin == "generated"]
    assert generated, "grounded targeting generated examples"
    bad_cases = {
        c["example_id"]
        for c in json.loads(get_bytes(ctx.store, f"evaluations/{task_id}/iter-1/evaluation.json"))["bad_cases"]
        if c["split"] == "feedback"
    }
    for example in generated:
        assert example.lineage and all(
            c["action"] == "generated_from_chunk" and c["bad_case_id"] in bad_cases and c["chunk_id"]
            for c in example.lineage
        )
    followup = report["iterations"][1]["bad_case_followup"]
    assert any(f["chunk_ids"] and f["targeted_training_examples"] for f in followup)
    with ctx.sessions() as session:
        grounded = session.get(Dataset, f"{task_id}-opt2").optimization_log["grounded"]
    assert grounded["grounded_added"] == len(generated) and grounded["source"] == "bad_cases"
    contexts = json.loads(get_bytes(ctx.store, f"optimized/{task_id}-opt1/contexts.json"))
    splits = Splits.from_json(json.loads(get_bytes(ctx.store, f"optimized/{task_id}-opt1/splits.json")))
    assert set(contexts["examples"]) == {e.id for e in splits.held_out()} and contexts["knowledge_base_version"] == 1
    assert assert_no_leakage(ctx, task_id, f"optimized/{task_id}-opt1/splits.json") == 2
    assert in_use.status_code == 204  # the task has finished: its knowledge base may go


async def test_a_task_that_follows_its_knowledge_base_is_continued_by_an_incremental_task(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(
        settings, temporal_env, knowledge_settle_seconds=0.3, retrain_quiet_seconds=1, retrain_poll_seconds=0.3
    )
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "services"})).json()["knowledge_base_id"]
        documents = write_knowledge(tmp_path / "kb")
        for path in documents:
            await api.post(f"/api/v1/knowledge-bases/{kb_id}/documents", files={"file": (path.name, path.read_bytes())})
        await wait_for_knowledge_base(api, kb_id)
        parent = await create_task(
            api,
            "standard",
            {
                "task_name": "follows",
                "model_name": tiny_model_dir,
                "dataset_id": dataset["dataset_id"],
                "knowledge_base_id": kb_id,
                "retrain_on_change": True,
                "hyperparameters": {**TINY_HYPERPARAMETERS, "max_seq_length": 320},
            },
        )
        await api.post(f"/api/v1/tasks/{parent['task_id']}/start")
        parent = await wait_until_done(api, parent["task_id"])
        assert parent["status"] == "COMPLETED", parent["error"]
        forced = await api.post(
            "/api/v1/models/follows/versions/1/promote", json={"alias": "production", "force": True, "reason": "first"}
        )
        assert forced.json()["status"] == "PROMOTED"

        # a new version of a document
        changed = documents[0].read_text().replace("listens on port 7400", "listens on port 7499")
        assert (
            await api.post(f"/api/v1/knowledge-bases/{kb_id}/documents", files={"file": (documents[0].name, changed)})
        ).status_code == 202
        child_id = await wait_for_child(api, parent["task_id"])
        child = await wait_until_done(api, child_id)
        assert child["status"] == "COMPLETED", child["error"]
        report = (await api.get(f"/api/v1/tasks/{child_id}/report")).json()
        lineage = (await api.get("/api/v1/models/follows/versions")).json()["items"]
        # production pointed at the parent's version: the re-trained one went before the gate by itself
        gates = (await api.get("/api/v1/models/follows/gates")).json()["items"]
        auto = await wait_for_gate(api, f"/api/v1/models/follows/gates/{gates[0]['gate_id']}")
        stale = (await api.get(f"/api/v1/knowledge-bases/{kb_id}/stale-rows")).json()["items"]
        head = (await api.get(f"/api/v1/datasets/{dataset['dataset_id']}")).json()["version"]

    assert (child["parent_task_id"], child["knowledge_base_id"], child["retrain_on_change"]) == (
        parent["task_id"],
        kb_id,
        True,
    )
    # the incremental task's adapter is the next version of its parent's model, so the gate can weigh one against the
    # other
    assert [(v["version"], v["task_id"], v["knowledge_base_version"]) for v in lineage] == [
        (2, child_id, 2),
        (1, parent["task_id"], 1),
    ]
    assert (auto["candidate_version"], auto["current_version"], auto["alias"], auto["forced"]) == (
        2,
        1,
        "production",
        False,
    )
    assert auto["status"] in ("PROMOTED", "REFUSED") and set(auto["figures"]["pooled"]["scores"]) == {
        "candidate",
        "current",
        "base",
    }
    # production comes from the parent: the gate asks the child's split only (the parent's, less its stale rows)
    assert [s["name"] for s in auto["figures"]["sets"]] == ["v2's test split"]
    # the one row that asked for the port the new version changed was marked stale before the re-training
    assert [(r["question"], r["old_value"], r["new_value"], r["state"]) for r in stale] == [
        ("What port does the backup service listen on?", "7400", "7499", "stale")
    ]
    assert (head, child["dataset_version"], stale[0]["marked_in_version"]) == (2, 2, 2)
    assert report["task"]["parent_task_id"] == parent["task_id"]
    [first] = report["iterations"]
    assert first["knowledge_base_version"] == 2 and set(first["comparison"]) == {"baseline", "parent"}
    # the parent's locked test split, the parent's adapter to continue from
    parent_splits = Splits.from_json(
        json.loads(get_bytes(ctx.store, f"optimized/{parent['task_id']}-opt1/splits.json"))
    )
    child_splits = Splits.from_json(json.loads(get_bytes(ctx.store, f"optimized/{child_id}-opt1/splits.json")))
    # less the stale row, wherever it was
    left_out = stale[0]["question"]
    for name in ("train", "feedback", "test"):
        assert [e.id for e in getattr(child_splits, name)] == [
            e.id for e in getattr(parent_splits, name) if e.question != left_out
        ]
    assert child_splits.test and sum(
        len(s) for s in (parent_splits.train, parent_splits.feedback, parent_splits.test)
    ) == (1 + sum(len(s) for s in (child_splits.train, child_splits.feedback, child_splits.test)))
    assert (
        first["training"]["continued_from"]
        == parent["latest_adapter_key"]
        == f"models/{parent['task_id']}/iter-1/adapter/"
    )
    assert first["comparison"]["parent"]["test"]["score"] == parent["latest_score"]
    assert Path(report["markdown_path"]).read_text().count(f"continues task `{parent['task_id']}`") == 1
    # and it targets the parent's last bad cases, with examples generated from the new version's chunks
    parent_bad_cases = {
        c["example_id"]
        for c in json.loads(get_bytes(ctx.store, f"evaluations/{parent['task_id']}/iter-1/evaluation.json"))[
            "bad_cases"
        ]
    }
    generated = [
        e
        for e in examples_from_jsonl(get_bytes(ctx.store, f"optimized/{child_id}-opt1/train.jsonl"))
        if e.origin == "generated"
    ]
    assert generated and all(c["bad_case_id"] in parent_bad_cases for e in generated for c in e.lineage)


async def wait_for_child(api, task_id: str, timeout: float = 120) -> str:
    """The id of the first incremental task that continues `task_id`, once one has been created."""

    async def children() -> list[dict]:
        return [t for t in (await api.get("/api/v1/tasks")).json()["items"] if t["parent_task_id"] == task_id]

    found = await poll_until(children, timeout=timeout, interval=0.3, what=f"an incremental task of {task_id}")
    return found[0]["task_id"]
