"""Knowledge bases through the API with real workers: every format uploaded and indexed, search with sources, document
previews, versions under one file name, and every bad upload refused with nothing left behind."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from activities.context import ActivityContext
from core.clock import utcnow
from db.models import KnowledgeBase, KnowledgeDocument, MLTask
from services import dataset_versions
from storage import keys
from testkit.api import api_client, create_task, wait_for_knowledge_base, with_temporal
from testkit.api import upload as upload_dataset
from testkit.documents import HTML, MARKDOWN, make_pdf, write_dataset, write_knowledge
from testkit.phases import running_workers
from testkit.polling import poll_until
from testkit.servers import free_port


@pytest.fixture
def online(settings, temporal_env):
    return with_temporal(settings, temporal_env, knowledge_settle_seconds=0.3)


async def upload(api, kb_id: str, filename: str, data: bytes):
    return await api.post(f"/api/v1/knowledge-bases/{kb_id}/documents", files={"file": (filename, data)})


def stored(settings) -> tuple[int, int, int]:
    """(knowledge bases, documents, objects) in the database and the object store."""
    ctx = ActivityContext.from_settings(settings)
    with ctx.sessions() as session:
        kbs = session.scalar(select(func.count()).select_from(KnowledgeBase))
        documents = session.scalar(select(func.count()).select_from(KnowledgeDocument))
    return kbs, documents, len(ctx.store.list("knowledge/"))


async def test_every_format_is_indexed_and_searchable_with_its_sources(online, temporal_env):
    ctx = ActivityContext.from_settings(online)
    async with running_workers(temporal_env.client, ctx), api_client(online) as api:
        created = await api.post(
            "/api/v1/knowledge-bases", json={"name": "FerroLink docs", "description": "the product's documentation"}
        )
        assert created.status_code == 201 and created.json()["status"] == "CREATED" and created.json()["version"] == 0
        kb_id = created.json()["knowledge_base_id"]
        assert created.headers["location"].endswith(kb_id)
        files = {
            "guide.md": MARKDOWN.encode(),
            "security.html": HTML.encode(),
            "errors.txt": b"FL-204 means a sync conflict between two devices.\n",
            "limits.pdf": make_pdf(
                ["The maximum size of a single file is 256 GB.", "Each user can pair at most 10 devices."]
            ),
        }
        for name, data in files.items():
            response = await upload(api, kb_id, name, data)
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "PENDING" and response.json()["version"] == 1
        kb = await wait_for_knowledge_base(api, kb_id, version=1)
        documents = (await api.get(f"/api/v1/knowledge-bases/{kb_id}/documents")).json()["items"]
        assert {d["filename"]: d["status"] for d in documents} == dict.fromkeys(files, "INDEXED")
        assert kb["document_count"] == 4 and kb["chunk_count"] == sum(d["chunk_count"] for d in documents) >= 6
        assert kb["total_bytes"] == sum(len(d) for d in files.values()) and kb["embedding_model"] == "all-MiniLM-L6-v2"

        for query, filename, heading in (
            ("Which TCP port serves the web console?", "guide.md", ["FerroLink guide", "Network ports"]),
            ("When do console sessions expire?", "security.html", ["Security", "Sessions"]),
            ("How many devices can a user pair?", "limits.pdf", ["page 2"]),
            ("What is error FL-204?", "errors.txt", []),
        ):
            response = await api.post(f"/api/v1/knowledge-bases/{kb_id}/search", json={"query": query, "top_k": 3})
            assert response.status_code == 200, response.text
            best = response.json()["results"][0]
            assert (best["filename"], best["heading_path"], best["rank"]) == (filename, heading, 1), (
                query,
                response.json(),
            )
            assert best["document_id"] in {d["document_id"] for d in documents} and 0 < best["score"] <= 1
        assert response.json()["version"] == kb["version"]

        guide = next(d for d in documents if d["filename"] == "guide.md")
        detail = (await api.get(f"/api/v1/knowledge-bases/{kb_id}/documents/{guide['document_id']}")).json()
        assert [c["heading_path"] for c in detail["chunks"]] == [
            ["FerroLink guide"],
            ["FerroLink guide", "Network ports"],
            ["FerroLink guide", "Backups", "Retention"],
        ]
        assert all(MARKDOWN[c["start"] : c["end"]] == c["text"] for c in detail["chunks"])

        # a new file under the same name is the document's next version; only it is embedded again
        new_guide = MARKDOWN.replace("7410", "8443").encode()
        replaced = await upload(api, kb_id, "guide.md", new_guide)
        assert (
            replaced.status_code == 202
            and replaced.json()["document_id"] == guide["document_id"]
            and replaced.json()["version"] == 2
        )
        kb = await wait_for_knowledge_base(api, kb_id, version=2)
        best = (
            await api.post(f"/api/v1/knowledge-bases/{kb_id}/search", json={"query": "web console port", "top_k": 1})
        ).json()["results"][0]
        assert "8443" in best["text"] and "7410" not in best["text"]
        assert kb["total_bytes"] == sum(len(d) for d in files.values()) - len(files["guide.md"]) + len(new_guide)
        # the replaced version's bytes are gone
        assert ctx.store.list(f"knowledge/{kb['org_id']}/{kb_id}/documents/{guide['document_id']}/") == [
            f"knowledge/{kb['org_id']}/{kb_id}/documents/{guide['document_id']}/v2/source.md"
        ]

        # the same bytes again are a conflict, under any name
        duplicate = await upload(api, kb_id, "copy.md", new_guide)
        assert duplicate.status_code == 409 and "already holds these exact bytes" in duplicate.json()["detail"]

        deleted = await api.delete(f"/api/v1/knowledge-bases/{kb_id}/documents/{guide['document_id']}")
        assert deleted.status_code == 202
        results = (
            await api.post(f"/api/v1/knowledge-bases/{kb_id}/search", json={"query": "web console port", "top_k": 10})
        ).json()["results"]
        assert "guide.md" not in {r["filename"] for r in results}
        kb = await wait_for_knowledge_base(api, kb_id, version=3)
        assert kb["document_count"] == 3
        assert (await api.get(f"/api/v1/knowledge-bases/{kb_id}/documents/{guide['document_id']}")).status_code == 404

        assert (await api.delete(f"/api/v1/knowledge-bases/{kb_id}")).status_code == 204
        assert (await api.get(f"/api/v1/knowledge-bases/{kb_id}")).status_code == 404
    assert stored(online) == (0, 0, 0)


@pytest.mark.parametrize(
    ("filename", "data", "status", "message"),
    [
        ("notes.docx", b"PK\x03\x04 a word file", 422, "unsupported document type 'docx'"),
        ("scan.pdf", b"GIF89a not a pdf", 422, "not a PDF"),
        ("binary.md", b"\x00\x01\x02 binary", 422, "binary data"),
        ("empty.txt", b"", 422, "the file is empty"),
        ("big.txt", b"x" * 3000, 413, "2048 byte limit"),
    ],
)
async def test_bad_uploads_are_refused_and_leave_nothing_behind(online, temporal_env, filename, data, status, message):
    online = online.model_copy(update={"max_document_bytes": 2048})
    async with api_client(online) as api:
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "kb"})).json()["knowledge_base_id"]
        response = await upload(api, kb_id, filename, data)
        assert response.status_code == status and message in response.json()["detail"], response.text
    assert stored(online) == (1, 0, 0)


async def test_an_upload_is_refused_whole_when_temporal_is_unreachable(settings, tmp_path):
    offline = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with api_client(offline) as api:
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "kb"})).json()["knowledge_base_id"]
        response = await upload(api, kb_id, "a.md", b"# A\n\ntext\n")
        assert response.status_code == 503 and "unreachable" in response.json()["detail"]
    assert stored(offline) == (1, 0, 0)


async def test_documents_count_towards_the_storage_quota(online, temporal_env):
    online = online.model_copy(update={"max_storage_bytes_per_org": 100})
    async with running_workers(temporal_env.client, ActivityContext.from_settings(online)), api_client(online) as api:
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "kb"})).json()["knowledge_base_id"]
        assert (await upload(api, kb_id, "a.md", b"# A\n\n" + b"a" * 60 + b"\n")).status_code == 202
        refused = await upload(api, kb_id, "b.md", b"# B\n\n" + b"b" * 60 + b"\n")
        assert refused.status_code == 409 and "storage quota exceeded" in refused.json()["detail"]
        await wait_for_knowledge_base(api, kb_id, version=1)
        org = (await api.get("/api/v1/auth/me")).json()["org_id"]
        assert (await api.get(f"/api/v1/orgs/{org}")).json()["storage_bytes"] == 66
        assert (await api.delete(f"/api/v1/knowledge-bases/{kb_id}")).status_code == 204
    assert stored(online) == (0, 0, 0)


async def test_a_knowledge_base_used_by_a_running_task_is_not_deleted(online, temporal_env, tmp_path):
    ctx = ActivityContext.from_settings(online)
    async with running_workers(temporal_env.client, ctx), api_client(online) as api:
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "kb"})).json()["knowledge_base_id"]
        assert (
            await upload(api, kb_id, "a.md", b"# A\n\nThe backup service listens on port 7400.\n")
        ).status_code == 202
        await wait_for_knowledge_base(api, kb_id, version=1)
        dataset = await upload_dataset(api, write_dataset(tmp_path / "faq.jsonl"))
        unfollowable = await api.post(
            "/api/v1/tasks/standard",
            json={"task_name": "t", "dataset_id": dataset["dataset_id"], "retrain_on_change": True},
        )
        assert (
            unfollowable.status_code == 422
            and "only if it has one (knowledge_base_id)" in unfollowable.json()["detail"]
        )
        created = await create_task(
            api,
            "standard",
            {
                "task_name": "t",
                "dataset_id": dataset["dataset_id"],
                "knowledge_base_id": kb_id,
                "retrain_on_change": True,
            },
        )
        assert (created["retrain_on_change"], created["parent_task_id"]) == (True, None)
        task_id = created["task_id"]
        with ctx.sessions.begin() as session:  # as a start would leave it, without running a model here
            task = session.get(MLTask, task_id)
            task.started_at, task.status = utcnow(), "TRAINING"
        refused = await api.delete(f"/api/v1/knowledge-bases/{kb_id}")
        assert refused.status_code == 409 and f"used by running task {task_id}" in refused.json()["detail"]
        with ctx.sessions.begin() as session:
            session.get(MLTask, task_id).status = "COMPLETED"
        assert (await api.delete(f"/api/v1/knowledge-bases/{kb_id}")).status_code == 204
        assert (await api.get(f"/api/v1/tasks/{task_id}")).json()[
            "knowledge_base_id"
        ] is None  # the reference is cleared


async def test_a_dataset_generated_from_a_knowledge_base_records_its_lineage_and_trains_a_task(
    online, temporal_env, tiny_model_dir, tmp_path
):
    ctx = ActivityContext.from_settings(online)
    async with running_workers(temporal_env.client, ctx), api_client(online) as api:
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "kb"})).json()["knowledge_base_id"]
        early = await api.post(
            f"/api/v1/knowledge-bases/{kb_id}/datasets", json={"name": "too early", "model_name": tiny_model_dir}
        )
        assert early.status_code == 409 and "has no index yet" in early.json()["detail"]
        for path in write_knowledge(tmp_path / "kb", n_topics=6):
            assert (await upload(api, kb_id, path.name, path.read_bytes())).status_code == 202
        kb = await wait_for_knowledge_base(api, kb_id, version=1)
        no_teacher = await api.post(
            f"/api/v1/knowledge-bases/{kb_id}/datasets", json={"name": "t", "generator": "teacher"}
        )
        assert no_teacher.status_code == 422 and "no teacher is configured" in no_teacher.json()["detail"]

        started = await api.post(
            f"/api/v1/knowledge-bases/{kb_id}/datasets",
            json={"name": "generated", "model_name": tiny_model_dir, "questions_per_chunk": 4},
        )
        assert started.status_code == 202 and started.json()["status"] == "GENERATING", started.text
        dataset_id = started.json()["dataset_id"]
        # 409 while it is still generating
        assert (await api.get(f"/api/v1/datasets/{dataset_id}/preview")).status_code in (
            200,
            409,
        )
        dataset = await wait_for_dataset(api, dataset_id)
        assert dataset["status"] == "READY", dataset
        assert (dataset["source_knowledge_base_id"], dataset["source_knowledge_base_version"]) == (kb_id, kb["version"])
        log = dataset["generation_log"]
        assert log["accepted"] == dataset["sample_count"] > 0 and log["candidates"] >= log["accepted"]
        assert sum(log["rejected"].values()) + log["accepted"] <= log["candidates"] and log["accepted_by_method"]
        rows = (await api.get(f"/api/v1/datasets/{dataset_id}/preview", params={"limit": 100})).json()["rows"]
        documents = {
            d["document_id"]: d for d in (await api.get(f"/api/v1/knowledge-bases/{kb_id}/documents")).json()["items"]
        }
        for row in rows:
            cause = row["lineage"][0]
            assert cause["action"] == "generated" and cause["document_id"] in documents and cause["chunk_id"]
            assert (
                cause["document_version"] == documents[cause["document_id"]]["version"] and row["origin"] == "generated"
            )
        # an ordinary dataset: a task trains on it
        task = await api.post(
            "/api/v1/tasks/standard",
            json={"task_name": "on generated data", "model_name": tiny_model_dir, "dataset_id": dataset_id},
        )
        assert task.status_code == 201, task.text


async def wait_for_dataset(api, dataset_id: str, timeout: float = 180) -> dict:
    """Poll a generated dataset until it is no longer GENERATING."""

    async def dataset() -> dict:
        return (await api.get(f"/api/v1/datasets/{dataset_id}")).json()

    return await poll_until(
        dataset, lambda d: d["status"] != "GENERATING", timeout=timeout, interval=0.3, what=f"dataset {dataset_id}"
    )


async def test_rows_generated_from_chunks_that_a_new_document_version_changes_are_generated_again(
    online, temporal_env, tiny_model_dir, tmp_path
):
    """A dataset generated from a knowledge base follows its documents: when a new version of a document changes one
    section, the rows written from that section's chunk are replaced by rows written from the changed chunk, in one
    version by the system whose reason says why; rows from the chunks that did not change, in that document or in
    another, stay as they were."""
    ctx = ActivityContext.from_settings(online)
    paths = write_knowledge(tmp_path / "kb", n_topics=6)
    async with running_workers(temporal_env.client, ctx), api_client(online) as api:
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "kb"})).json()["knowledge_base_id"]
        for path in paths:
            assert (await upload(api, kb_id, path.name, path.read_bytes())).status_code == 202
        await wait_for_knowledge_base(api, kb_id, version=1)
        started = await api.post(
            f"/api/v1/knowledge-bases/{kb_id}/datasets",
            json={"name": "generated", "model_name": tiny_model_dir, "questions_per_chunk": 2},
        )
        dataset_id = started.json()["dataset_id"]
        assert (await wait_for_dataset(api, dataset_id))["status"] == "READY"
        org_id = ctx_org(ctx, kb_id)
        before_rows = stored_rows(ctx, org_id, dataset_id, 1)
        old_index = ctx.knowledge_indexes.get(keys.knowledge_index_prefix(org_id, kb_id, 1))
        old_chunks = {c.chunk_id: c for c in old_index.chunks}

        # the first topic's port changes in the first document; its other sections and the second document do not
        changed_text = paths[0].read_text().replace("listens on port 7400.", "listens on port 7450.")
        assert changed_text != paths[0].read_text()
        assert (await upload(api, kb_id, paths[0].name, changed_text.encode())).status_code == 202
        await wait_for_knowledge_base(api, kb_id, version=2)
        regenerated = await poll_until(
            lambda: api.get(f"/api/v1/datasets/{dataset_id}/versions"),
            lambda r: r.json()["items"][-1]["kind"] == "regeneration",
            timeout=120,
            interval=0.5,
            what="the regeneration version",
        )
        version = regenerated.json()["items"][-1]
        assert version["created_by"] is None and f"{paths[0].name} v2" in version["reason"]
        new_index = ctx.knowledge_indexes.get(keys.knowledge_index_prefix(org_id, kb_id, 2))
        new_chunks = {c.chunk_id: c for c in new_index.chunks}
        after_rows = stored_rows(ctx, org_id, dataset_id, version["version"])

        def source(record: dict) -> tuple[str, str]:
            cause = record["lineage"][0]
            return cause["filename"], cause["chunk_id"]

        removed = set(before_rows) - set(after_rows)
        added = set(after_rows) - set(before_rows)
        assert removed and added, (removed, added)
        assert version["changes"]["removed"] == len(removed) and version["changes"]["added"] == len(added)
        # removed: exactly the rows of the chunk whose text changed
        for row_id, row in before_rows.items():
            filename, chunk_id = source(row)
            changed = "7400." in old_chunks[chunk_id].text
            assert (row_id in removed) == changed, (row_id, filename, old_chunks[chunk_id].text)
        # added: written from the changed chunk of the new document version, never repeating a row that stayed
        for row_id in added:
            filename, chunk_id = source(after_rows[row_id])
            assert filename == paths[0].name and "7450." in new_chunks[chunk_id].text
            assert after_rows[row_id]["lineage"][0]["document_version"] == 2
        kept_questions = [r["question"] for i, r in after_rows.items() if i not in added]
        assert not {after_rows[i]["question"] for i in added} & set(kept_questions)
        dataset = (await api.get(f"/api/v1/datasets/{dataset_id}")).json()
        assert dataset["source_knowledge_base_version"] == 2 and dataset["sample_count"] == len(after_rows)


def ctx_org(ctx: ActivityContext, kb_id: str) -> str:
    with ctx.sessions() as session:
        return session.get_one(KnowledgeBase, kb_id).org_id


def stored_rows(ctx: ActivityContext, org_id: str, dataset_id: str, version: int) -> dict[str, dict]:
    """A version's rows as stored (the API's row listing leaves out their lineage)."""
    with ctx.sessions() as session:
        stored = dataset_versions.get_version(session, ctx.store, org_id, dataset_id, version)
    return {row.id: row.record for row in dataset_versions.version_rows(ctx.store, stored)}
