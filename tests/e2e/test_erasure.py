"""Erasure end to end: a real task (tiny model, real workers, real Temporal server) trains on a dataset whose row is
then erased through the API. Afterwards no stored file holds the row's question or answer (the whole object store is
scanned), every dataset version that held it was rewritten with its hash chain recorded, and the registered version
trained on it is flagged and listed."""

from __future__ import annotations

import json

from activities.context import ActivityContext
from db.models import Dataset, QAEntry
from serving.app import create_serving_app
from testkit.api import (
    anonymous_client,
    api_client,
    create_task,
    upload,
    wait_for_knowledge_base,
    wait_until_done,
    with_temporal,
)
from testkit.documents import write_dataset, write_knowledge
from testkit.model import TINY_HYPERPARAMETERS
from testkit.phases import running_workers


def files_mentioning(ctx: ActivityContext, *texts: str) -> list[str]:
    found = []
    for key in ctx.store.list(""):
        data = b"".join(ctx.store.get_stream(key))
        if any(text.encode() in data for text in texts):
            found.append(key)
    return found


async def test_an_erased_row_leaves_every_stored_file_and_flags_the_versions_trained_on_it(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        base = f"/api/v1/datasets/{dataset['dataset_id']}"
        rows = (await api.get(f"{base}/versions/1/rows", params={"limit": 200})).json()["items"]
        erased = rows[5]
        annotated = await api.post(
            f"{base}/annotations", json={"reason": "tag", "edits": [{"row_id": rows[0]["row_id"], "add_tags": ["x"]}]}
        )
        assert annotated.status_code == 201
        task = await create_task(
            api,
            "standard",
            {
                "task_name": "trained on it",
                "dataset_id": dataset["dataset_id"],
                "model_name": tiny_model_dir,
                "hyperparameters": TINY_HYPERPARAMETERS,
                "register_as": "faq-bot",
            },
        )
        assert (await api.post(f"/api/v1/tasks/{task['task_id']}/start")).status_code == 202
        assert (await wait_until_done(api, task["task_id"]))["status"] == "COMPLETED"
        texts = (erased["question"], erased["answer"])
        before = files_mentioning(ctx, *texts)
        assert any(k.startswith("optimized/") for k in before) and any(k.startswith("evaluations/") for k in before)

        response = await api.post(
            "/api/v1/erasures",
            json={"dataset_id": dataset["dataset_id"], "row_id": erased["row_id"], "reason": "the customer asked"},
        )
        assert response.status_code == 201, response.text
        erasure = response.json()
        leftover = files_mentioning(ctx, *texts)
        assert leftover == [], leftover
        assert [(v["version"], v["rows_before"], v["rows_after"]) for v in erasure["dataset_versions"]] == [
            (1, 48, 47),
            (2, 48, 47),
        ]
        assert all(v["content_hash_before"] != v["content_hash_after"] for v in erasure["dataset_versions"])
        assert erasure["model_versions"] == ["faq-bot@1"] and set(before) <= set(erasure["blobs"]) | {
            k for k in before if k.startswith(f"datasets/{dataset['org_id']}/")
        }
        versions = (await api.get(f"{base}/versions")).json()["items"]
        assert [v["content_hash"] for v in versions] == [v["content_hash_after"] for v in erasure["dataset_versions"]]
        assert (await api.get(f"{base}/versions/2/rows", params={"limit": 200})).json()["total"] == 47
        version = (await api.get("/api/v1/models/faq-bot/versions/1")).json()
        assert version["erased_data_at"] is not None
        report = (await api.get(f"/api/v1/tasks/{task['task_id']}/report")).json()
        assert erased["question"] not in json.dumps(report)
        assert [e["erasure_id"] for e in (await api.get("/api/v1/erasures")).json()] == [erasure["erasure_id"]]

        again = await api.post(
            "/api/v1/erasures", json={"dataset_id": dataset["dataset_id"], "row_id": erased["row_id"], "reason": "x"}
        )
        assert again.status_code == 404 and "holds row" in again.json()["detail"]


async def test_an_erased_document_and_then_everything_its_user_sent_leave_every_stored_file(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    """A knowledge base of two documents, a dataset of rows generated from the first (their lineage names it), a task
    trained with the knowledge base's passages, and an answer served with retrieval. Erasing the first document takes
    its text out of every stored file (the whole object store is scanned), out of the live index (a new index version,
    the old one deleted) and out of the sources the history quotes; the rows generated from it leave their dataset;
    the version trained with its passages is flagged. Then erasing the user who sent all of it leaves no file holding
    any of their rows or documents, and no history entry of theirs."""
    settings = with_temporal(settings, temporal_env, knowledge_settle_seconds=0.3)
    ctx = ActivityContext.from_settings(settings)
    documents = write_knowledge(tmp_path / "kb", n_topics=6)  # two files: services-1.md and services-2.md
    for n, path in enumerate(documents, start=1):  # a sentence in every section that only this document holds
        path.write_text(
            path.read_text().replace("\n\n## ", f"\n- Its keeper is Quokka team {n}.\n\n## ")
            + f"- Its keeper is Quokka team {n}.\n"
        )
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        me = (await api.get("/api/v1/auth/me")).json()
        faq = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "services"})).json()["knowledge_base_id"]
        ids = {}
        for path in documents:
            stored = await api.post(
                f"/api/v1/knowledge-bases/{kb_id}/documents", files={"file": (path.name, path.read_bytes())}
            )
            assert stored.status_code == 202, stored.text
            ids[path.name] = stored.json()["document_id"]
        await wait_for_knowledge_base(api, kb_id)
        erased_id, kept_id = ids["services-1.md"], ids["services-2.md"]
        # a dataset generated from the knowledge base: one row from each document
        generated_rows = [
            {
                "question": f"From part {n}?",
                "answer": f"Generated statement number {n} of the services guide.",
                "lineage": [{"action": "generated", "document_id": doc, "chunk_id": "c", "filename": name}],
            }
            for n, (name, doc) in enumerate(sorted(ids.items()), start=1)
        ]
        (tmp_path / "generated.jsonl").write_text("\n".join(json.dumps(r) for r in generated_rows) + "\n")
        generated = await upload(api, tmp_path / "generated.jsonl")
        with ctx.sessions() as session:
            session.get_one(Dataset, generated["dataset_id"]).source_knowledge_base_id = kb_id
            session.commit()
        task = await create_task(
            api,
            "standard",
            {
                "task_name": "with passages",
                "dataset_id": faq["dataset_id"],
                "model_name": tiny_model_dir,
                "knowledge_base_id": kb_id,
                "retrieval_top_k": 2,
                "hyperparameters": {**TINY_HYPERPARAMETERS, "max_seq_length": 320},
                "register_as": "services-bot",
            },
        )
        assert (await api.post(f"/api/v1/tasks/{task['task_id']}/start")).status_code == 202
        assert (await wait_until_done(api, task["task_id"]))["status"] == "COMPLETED"
        async with anonymous_client(
            create_serving_app(settings), {"Authorization": api.headers["authorization"]}
        ) as served:
            answered = await served.post(
                "/v1/chat/completions",
                json={
                    "model": "services-bot@1",
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": "Is Quokka team 1 the keeper of the alpha service?"}],
                },
            )
            assert answered.status_code == 200, answered.text
        title = "Quokka team 1"  # only the first document holds it
        before = files_mentioning(ctx, title)
        assert any("/documents/" in k for k in before) and any("/index/v1/" in k for k in before)
        assert any(k.startswith("optimized/") for k in before), before  # the task's training passages
        with ctx.sessions() as session:
            [entry] = session.query(QAEntry).all()
            assert erased_id in {s["document_id"] for s in entry.sources}, entry.sources

        refused = await api.post("/api/v1/erasures/documents", json={"knowledge_base_id": kb_id, "reason": "x"})
        assert refused.status_code == 422 and "documentId" in refused.text
        response = await api.post(
            "/api/v1/erasures/documents",
            json={"knowledge_base_id": kb_id, "document_id": erased_id, "reason": "the author withdrew it"},
        )
        assert response.status_code == 201, response.text
        erasure = response.json()
        assert files_mentioning(ctx, title) == []
        assert (erasure["kind"], erasure["target"]) == ("document", f"{kb_id}/{erased_id}")
        assert erasure["model_versions"] == ["services-bot@1"]
        index_versions = [v for v in erasure["dataset_versions"] if "index_version" in v]
        assert [(v["index_version"], v["live"], v["replaced_by"]) for v in index_versions] == [(1, True, 2)]
        assert index_versions[0]["chunks_after"] < index_versions[0]["chunks_before"]
        kb = (await api.get(f"/api/v1/knowledge-bases/{kb_id}")).json()
        assert (kb["version"], kb["document_count"]) == (2, 1)
        assert [
            d["document_id"] for d in (await api.get(f"/api/v1/knowledge-bases/{kb_id}/documents")).json()["items"]
        ] == [kept_id]
        hits = (
            await api.post(f"/api/v1/knowledge-bases/{kb_id}/search", json={"query": "alpha port", "top_k": 5})
        ).json()
        assert hits["results"] and all(h["document_id"] == kept_id for h in hits["results"])
        rows = (await api.get(f"/api/v1/datasets/{generated['dataset_id']}/versions/1/rows")).json()["items"]
        assert [r["question"] for r in rows] == ["From part 2?"]  # the row generated from the erased document left
        with ctx.sessions() as session:
            [entry] = session.query(QAEntry).all()
            assert entry.sources and erased_id not in {s["document_id"] for s in entry.sources}

        # everything the user sent: the FAQ, the generated dataset, the other document, the answer they asked for
        faq_texts = [
            r["question"]
            for r in (
                await api.get(f"/api/v1/datasets/{faq['dataset_id']}/versions/1/rows", params={"limit": 200})
            ).json()["items"]
        ]
        assert files_mentioning(ctx, faq_texts[0]) != []
        response = await api.post("/api/v1/erasures/users", json={"user_id": me["user_id"], "reason": "GDPR art. 17"})
        assert response.status_code == 201, response.text
        assert files_mentioning(ctx, *faq_texts, "Quokka team 2", "Generated statement number 2") == []
        assert (await api.get(f"/api/v1/datasets/{faq['dataset_id']}/versions/1/rows")).json()["total"] == 0
        assert (await api.get(f"/api/v1/knowledge-bases/{kb_id}/documents")).json()["items"] == []
        assert (await api.get("/api/v1/qa/history")).json()["total"] == 0
        assert [e["kind"] for e in (await api.get("/api/v1/erasures")).json()] == ["user", "document"]
        again = await api.post("/api/v1/erasures/users", json={"user_id": me["user_id"], "reason": "again"})
        assert again.status_code == 404, again.text
