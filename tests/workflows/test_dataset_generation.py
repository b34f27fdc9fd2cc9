"""The generation workflow on a real Temporal server with the real activity (tiny model, real validation)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from activities.context import ActivityContext
from activities.knowledge import KnowledgeActivities
from core.settings import TASK_QUEUE_WORKFLOWS
from db.models import Dataset
from schemas.workflow_io import GenerationInput
from services import knowledge as service
from temporal_client.workflows import DatasetGenerationWorkflow, KnowledgeIngestionWorkflow
from testkit.documents import write_knowledge
from testkit.histories import record_history
from testkit.knowledge import activities_with, new_kb, upload_document, wait_for_kb
from testkit.phases import running_workers


@pytest.fixture
def ctx(settings) -> ActivityContext:
    return ActivityContext.from_settings(settings.model_copy(update={"knowledge_settle_seconds": 0.3}))


def generating_dataset(ctx: ActivityContext, kb) -> Dataset:
    with ctx.sessions.begin() as session:
        dataset = Dataset(
            name="generated",
            storage_key=f"datasets/org/g-{kb.id}/data.jsonl",
            file_format="jsonl",
            size_bytes=0,
            sample_count=0,
            org_id="org",
            status="GENERATING",
            source_knowledge_base_id=kb.id,
        )
        session.add(dataset)
    return dataset


async def test_a_generated_dataset_becomes_ready_with_its_log(temporal_env, ctx, tiny_model_dir, tmp_path):
    kb = new_kb(ctx)
    async with running_workers(temporal_env.client, ctx, activities_with(ctx, KnowledgeActivities(ctx))):
        for path in write_knowledge(tmp_path / "kb", n_topics=3):
            await upload_document(ctx, temporal_env.client, kb, path.name, path.read_bytes())
        kb = await wait_for_kb(ctx, kb.id, "READY", version=1)
        dataset = generating_dataset(ctx, kb)
        handle = await temporal_env.client.start_workflow(
            DatasetGenerationWorkflow.run,
            GenerationInput(dataset.id, "org", kb.id, tiny_model_dir, questions_per_chunk=4),
            id=f"gen-{dataset.id}",
            task_queue=TASK_QUEUE_WORKFLOWS,
        )
        result = await handle.result()
        await record_history(handle, "dataset-generation")
        await temporal_env.client.get_workflow_handle_for(
            KnowledgeIngestionWorkflow.run, service.ingestion_workflow_id(kb.id)
        ).cancel()
    with ctx.sessions() as session:
        row = session.get(Dataset, dataset.id)
    assert row.status == "READY" and row.sample_count == result.examples > 0 and row.source_knowledge_base_version == 1
    assert row.generation_log["accepted"] == result.examples and result.knowledge_base_version == 1
    assert ctx.store.exists(row.storage_key)


async def test_a_generation_that_cannot_run_fails_with_its_reason(temporal_env, ctx, tiny_model_dir):
    kb = new_kb(ctx)  # never built: no index
    dataset = generating_dataset(ctx, kb)
    async with running_workers(temporal_env.client, ctx):
        handle = await temporal_env.client.start_workflow(
            DatasetGenerationWorkflow.run,
            GenerationInput(dataset.id, "org", kb.id, tiny_model_dir, retry_initial_seconds=0.1),
            id=f"gen-{dataset.id}",
            task_queue=TASK_QUEUE_WORKFLOWS,
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    with ctx.sessions() as session:
        row = session.get(Dataset, dataset.id)
    assert row.status == "FAILED" and "has no index" in row.error
