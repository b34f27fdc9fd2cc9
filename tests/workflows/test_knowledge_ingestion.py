"""The ingestion workflow on a real Temporal server with the real build activity (real parsing, MiniLM, FAISS):
uploads become signals, changes during a build are queued and built once, a bad document fails alone."""

from __future__ import annotations

import asyncio
import io
import json
import threading

import pytest
from sqlalchemy import select

from activities.context import ActivityContext
from activities.knowledge import KnowledgeActivities
from db.models import Dataset, KnowledgeBase, KnowledgeDocument, StaleRow
from schemas.workflow_io import BuildKnowledgeIndexResult
from services import dataset_versions as versions
from services import knowledge as service
from services.datasets import upload_dataset
from services.knowledge import IndexCache, ingestion_workflow_id
from temporal_client.workflows import KnowledgeIngestionWorkflow
from testkit.documents import note
from testkit.histories import record_history
from testkit.knowledge import activities_with, new_kb, upload_document, wait_for_kb
from testkit.phases import running_workers
from testkit.polling import poll_until


@pytest.fixture
def ctx(settings) -> ActivityContext:
    return ActivityContext.from_settings(settings.model_copy(update={"knowledge_settle_seconds": 0.5}))


class GatedKnowledge(KnowledgeActivities):
    """The real build, held once it has read which documents to index, until the test opens the gate (so changes
    arrive during a build, after it took its snapshot of the knowledge base)."""

    def __init__(self, ctx: ActivityContext):
        super().__init__(ctx)
        self.started, self.gate = threading.Event(), threading.Event()
        self.builds: list[BuildKnowledgeIndexResult] = []

    def _build(self, inp, heartbeat):
        self.heartbeat = heartbeat
        result = super()._build(inp, heartbeat)
        self.builds.append(result)
        return result

    def _load(self, index_key, directory):
        self.started.set()
        for _ in range(120):  # held, but alive: a silent activity would be timed out and retried
            if self.gate.wait(timeout=0.5):
                break
            self.heartbeat.update(stage="held by the test")
        return super()._load(index_key, directory)


def documents(ctx: ActivityContext, kb_id: str) -> dict[str, KnowledgeDocument]:
    with ctx.sessions() as session:
        return {
            d.filename: d
            for d in session.scalars(select(KnowledgeDocument).where(KnowledgeDocument.knowledge_base_id == kb_id))
        }


async def test_uploads_during_a_build_are_queued_and_each_indexed_exactly_once(temporal_env, ctx):
    knowledge = GatedKnowledge(ctx)
    kb = new_kb(ctx)
    async with running_workers(temporal_env.client, ctx, activities_with(ctx, knowledge)):
        await upload_document(ctx, temporal_env.client, kb, "note-0.md", note(0))
        await asyncio.get_running_loop().run_in_executor(None, knowledge.started.wait, 60)
        assert (await wait_for_kb(ctx, kb.id, "BUILDING")).version == 0
        for i in range(1, 11):  # ten uploads while the first build runs
            await upload_document(ctx, temporal_env.client, kb, f"note-{i}.md", note(i))
        handle = temporal_env.client.get_workflow_handle_for(
            KnowledgeIngestionWorkflow.run, ingestion_workflow_id(kb.id)
        )
        assert len((await handle.query(KnowledgeIngestionWorkflow.progress)).pending_documents) == 10
        knowledge.gate.set()
        ready = await wait_for_kb(ctx, kb.id, "READY", version=2)
        await handle.cancel()
    assert [b.version for b in knowledge.builds] == [1, 2]  # the first build, then one build for the ten queued uploads
    # nothing embedded twice
    assert knowledge.builds[0].embedded_chunks == 1 and knowledge.builds[1].embedded_chunks == 10
    assert (ready.version, ready.document_count, ready.chunk_count) == (2, 11, 11)
    assert all(d.status == "INDEXED" and d.chunk_count == 1 for d in documents(ctx, kb.id).values())
    index = service.current_index(IndexCache(ctx.store), ready)
    assert len({c.chunk_id for c in index.chunks}) == len(index.chunks) == 11
    assert sorted(c.filename for c in index.chunks) == sorted(f"note-{i}.md" for i in range(11))


async def test_a_corrupt_pdf_fails_alone_and_a_deleted_document_leaves_search_then_the_index(temporal_env, ctx):
    knowledge = KnowledgeActivities(ctx)
    kb = new_kb(ctx)
    cache = IndexCache(ctx.store)
    async with running_workers(temporal_env.client, ctx, activities_with(ctx, knowledge)):
        await upload_document(
            ctx, temporal_env.client, kb, "ports.md", b"# Ports\n\nThe web console listens on TCP port 7410.\n"
        )
        await upload_document(
            ctx, temporal_env.client, kb, "backups.md", b"# Backups\n\nScheduled backups run daily at 02:00.\n"
        )
        await upload_document(ctx, temporal_env.client, kb, "scan.pdf", b"%PDF-1.4\nthis is not a PDF body at all")
        ready = await wait_for_kb(ctx, kb.id, "READY", version=1)
        docs = documents(ctx, kb.id)
        assert docs["scan.pdf"].status == "FAILED" and "not a readable PDF" in docs["scan.pdf"].error
        assert docs["ports.md"].status == docs["backups.md"].status == "INDEXED"
        assert (ready.document_count, ready.chunk_count, ready.error) == (2, 2, None)
        with ctx.sessions() as session:
            hits = service.search(session, cache, ready, "Which port does the console use?", 2)
            assert hits[0].chunk.filename == "ports.md" and hits[0].chunk.heading_path == ["Ports"]

            service.delete_document(session, ctx.store, ready, docs["ports.md"].id)
            # gone from search at once, before any rebuild
            assert {
                h.chunk.filename for h in service.search(session, cache, ready, "Which port does the console use?", 5)
            } == {"backups.md"}

        async def temporal():
            return temporal_env.client

        await service.request_build(temporal, ctx.settings, ready, [docs["ports.md"].id])
        rebuilt = await wait_for_kb(ctx, kb.id, "READY", version=2)
        handle = temporal_env.client.get_workflow_handle_for(
            KnowledgeIngestionWorkflow.run, ingestion_workflow_id(kb.id)
        )
        await handle.cancel()
    assert (rebuilt.document_count, rebuilt.chunk_count) == (1, 1)
    assert [c.filename for c in service.current_index(cache, rebuilt).chunks] == ["backups.md"]
    assert ctx.store.list(f"knowledge/org/{kb.id}/documents/{docs['ports.md'].id}/") == []


async def test_an_idle_ingestion_ends_and_the_next_change_starts_it_again(temporal_env, ctx):
    settings = ctx.settings.model_copy(update={"knowledge_idle_seconds": 1})
    ctx = ActivityContext(settings, ctx.store, ctx.sessions)
    knowledge = KnowledgeActivities(ctx)
    kb = new_kb(ctx)
    async with running_workers(temporal_env.client, ctx, activities_with(ctx, knowledge)):
        await upload_document(ctx, temporal_env.client, kb, "a.md", b"# A\n\nAlpha is the first letter.\n")
        handle = temporal_env.client.get_workflow_handle_for(
            KnowledgeIngestionWorkflow.run, ingestion_workflow_id(kb.id)
        )
        first = await handle.result()
        assert (first.builds, first.version, first.status) == (1, 1, "READY")
        await record_history(handle, "knowledge-ingestion")
        await upload_document(ctx, temporal_env.client, kb, "b.md", b"# B\n\nBeta is the second letter.\n")
        second = await temporal_env.client.get_workflow_handle_for(
            KnowledgeIngestionWorkflow.run, ingestion_workflow_id(kb.id)
        ).result()
    assert (second.builds, second.version, second.status) == (1, 2, "READY")
    with ctx.sessions() as session:
        assert session.get(KnowledgeBase, kb.id).chunk_count == 2


async def test_deleting_a_knowledge_base_during_a_build_stops_the_build_and_leaves_nothing(temporal_env, ctx):
    knowledge = GatedKnowledge(ctx)
    kb = new_kb(ctx)

    async def temporal():
        return temporal_env.client

    async with running_workers(temporal_env.client, ctx, activities_with(ctx, knowledge)):
        await upload_document(ctx, temporal_env.client, kb, "note-0.md", note(0))
        await asyncio.get_running_loop().run_in_executor(None, knowledge.started.wait, 60)
        with ctx.sessions() as session:
            await service.delete_knowledge_base(session, ctx.store, temporal, "org", kb.id)
        handle = temporal_env.client.get_workflow_handle_for(
            KnowledgeIngestionWorkflow.run, ingestion_workflow_id(kb.id)
        )
        assert (await handle.describe()).status.name in ("CANCELED", "TERMINATED")
        knowledge.gate.set()
    with ctx.sessions() as session:
        assert session.get(KnowledgeBase, kb.id) is None and not documents(ctx, kb.id)
    assert ctx.store.list(f"knowledge/org/{kb.id}/") == [] and knowledge.builds == []


async def test_a_new_document_version_marks_the_rows_it_contradicts_before_the_followers_are_told(temporal_env, ctx):
    """After the build that indexed a document's second version, the rows of a dataset generated from the knowledge
    base whose checks ask for a value it changed are marked stale in a new dataset version (then the rows written from
    changed chunks are generated again, and the followers are notified); the first build, which replaced nothing,
    marks nothing."""
    kb = new_kb(ctx)
    rows = [
        {"id": "web", "question": "Which port does the web console use?", "answer": "TCP port 7410.",
         "checks": [{"type": "number", "value": 7410}]},
        {"id": "sync", "question": "Which port does file sync use?", "answer": "TCP port 7411.",
         "checks": [{"type": "number", "value": 7411}]},
    ]  # fmt: skip
    with ctx.sessions() as session:
        dataset = upload_dataset(
            session,
            ctx.store,
            ctx.settings,
            stream=io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode()),
            filename="faq.jsonl",
            name="faq",
            domain=None,
            dataset_type=None,
            org_id="org",
            created_by=None,
        )
        dataset.source_knowledge_base_id = kb.id  # as if generated from it
        session.commit()
        dataset_id = dataset.id
    guide = "# Ports\n\nThe web console listens on TCP port 7410.\nFile sync uses TCP port 7411.\n"
    async with running_workers(temporal_env.client, ctx, activities_with(ctx, KnowledgeActivities(ctx))):
        await upload_document(ctx, temporal_env.client, kb, "ports.md", guide.encode())
        await wait_for_kb(ctx, kb.id, "READY", version=1)
        await upload_document(ctx, temporal_env.client, kb, "ports.md", guide.replace("7410", "7420").encode())
        await wait_for_kb(ctx, kb.id, "READY", version=2)
        handle = temporal_env.client.get_workflow_handle_for(
            KnowledgeIngestionWorkflow.run, ingestion_workflow_id(kb.id)
        )

        async def activities() -> list[str]:
            return [
                e.activity_task_scheduled_event_attributes.activity_type.name
                for e in (await handle.fetch_history()).events
                if e.HasField("activity_task_scheduled_event_attributes")
            ]

        scheduled = await poll_until(
            activities, lambda names: names.count("notify_followers") == 2, what="both builds told the followers"
        )
        await handle.cancel()
        await record_history(handle, "knowledge-ingestion-regenerate")
    assert scheduled == [
        "build_knowledge_index",
        "notify_followers",
        "build_knowledge_index",
        "mark_stale_rows",
        "regenerate_generated_rows",  # on the evaluate pool; this dataset's rows were not generated: none
        "notify_followers",
    ]
    with ctx.sessions() as session:
        head = session.get_one(Dataset, dataset_id).version
        [stale] = session.scalars(select(StaleRow).where(StaleRow.dataset_id == dataset_id)).all()
        marked = versions.version_rows(ctx.store, versions.get_version(session, ctx.store, "org", dataset_id, head))
    assert head == 2 and (stale.row_id, stale.old_value, stale.new_value) == ("web", "7410", "7420")
    assert [(r.id, r.excluded, r.tags) for r in marked] == [("web", True, ["stale"]), ("sync", False, [])]
