"""The suite run's workflow on a real Temporal server with the real activities and the tiny model: every case is
answered and judged, the answers and verdicts are stored with the run; a run that cannot answer (its knowledge base
has no index) is FAILED with the reason, after no retry."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from activities.context import ActivityContext
from core.settings import TASK_QUEUE_WORKFLOWS
from db.models import KnowledgeBase, SuiteRun, new_id
from schemas.workflow_io import ActivityTimeouts, SuiteRunInput
from services import suites as service
from services.registry import Served
from temporal_client.workflows import SuiteRunWorkflow
from testkit.histories import record_history
from testkit.phases import running_workers
from testkit.suites import CASES


@pytest.fixture
def ctx(settings) -> ActivityContext:
    return ActivityContext.from_settings(settings)


def new_run(ctx: ActivityContext, base_model: str, cases: list[dict]) -> str:
    """A RUNNING run of a new suite against `base_model`."""
    with ctx.sessions() as session:
        suite = service.create_suite(
            session, "org", f"s-{new_id()[:8]}", cases, blocking=True, description=None, created_by=None
        )
        return service.new_run(session, "org", suite, Served(base_model, base_model), requested_by=None).id


async def run(client, run_id: str, record: str):
    handle = await client.start_workflow(
        SuiteRunWorkflow.run,
        SuiteRunInput(run_id=run_id, timeouts=ActivityTimeouts(heartbeat_seconds=30, retry_initial_seconds=0.1)),
        id=service.suite_run_workflow_id(run_id),
        task_queue=TASK_QUEUE_WORKFLOWS,
    )
    try:
        return await handle.result()
    finally:
        await record_history(handle, record)


async def test_a_suite_run_answers_and_judges_every_case(temporal_env, ctx, tiny_model_dir):
    run_id = new_run(ctx, tiny_model_dir, CASES)
    async with running_workers(temporal_env.client, ctx):
        result = await run(temporal_env.client, run_id, "suite-run-completed")
    assert (result.passed, result.failed, result.total) == (1, 3, 4)
    with ctx.sessions() as session:
        stored = session.get_one(SuiteRun, run_id)
        assert (stored.status, stored.passed, stored.failed, stored.model) == ("COMPLETED", 1, 3, tiny_model_dir)
        assert [r["case_id"] for r in stored.results] == [c["id"] for c in CASES]
        assert stored.finished_at is not None


async def test_a_run_that_cannot_answer_fails_with_the_reason(temporal_env, ctx, tiny_model_dir):
    with ctx.sessions() as session:
        kb = KnowledgeBase(
            id=new_id(),
            org_id="org",
            name="empty",
            status="EMPTY",
            embedding_model="all-MiniLM-L6-v2",
            chunk_tokens=200,
            chunk_overlap_tokens=20,
        )
        session.add(kb)
        session.commit()
        kb_id = kb.id
    run_id = new_run(ctx, tiny_model_dir, [{"id": "kb", "prompt": "Q?", "knowledge_base_id": kb_id, "refusal": True}])
    async with running_workers(temporal_env.client, ctx):
        with pytest.raises(WorkflowFailureError) as failure:
            await run(temporal_env.client, run_id, "suite-run-failed")
    assert f"knowledge base {kb_id} has no index yet" in str(failure.value.cause)
    with ctx.sessions() as session:
        stored = session.get_one(SuiteRun, run_id)
        assert (
            stored.status == "FAILED" and stored.error == f"run_suite failed: knowledge base {kb_id} has no index yet"
        )
        assert stored.results == []
