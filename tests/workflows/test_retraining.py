"""Incremental re-training on a real Temporal server: real knowledge-base builds (parsing, MiniLM, FAISS) signal the
RetrainWorkflow of each task that follows the knowledge base; the tasks' phases are the fakes (orchestration only)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from activities.context import ActivityContext
from activities.retraining import RetrainingActivities, retrain_workflow_id
from core.settings import TASK_QUEUE_WORKFLOWS
from core.status import TaskMode
from db.models import MLTask
from schemas.workflow_io import RetrainInput, RetrainResult
from services.knowledge import ingestion_workflow_id
from storage.keys import first_splits_key
from storage.object_store import put_bytes
from temporal_client.workflows import FineTuningWorkflow, RetrainWorkflow
from testkit.documents import note
from testkit.factories import make_task, task_row
from testkit.histories import record_history
from testkit.knowledge import new_kb, upload_document, wait_for_kb
from testkit.phases import FakePhases, running_workers, wait_for_status
from testkit.polling import poll_until
from testkit.workflows import start


@pytest.fixture
def ctx(settings) -> ActivityContext:
    return ActivityContext.from_settings(
        settings.model_copy(
            update={"knowledge_settle_seconds": 0.3, "retrain_quiet_seconds": 12, "retrain_poll_seconds": 0.3}
        )
    )


def following_task(ctx: ActivityContext, kb_id: str, retrain_on_change: bool = True, **fields) -> MLTask:
    return make_task(ctx, knowledge_base_id=kb_id, retrain_on_change=retrain_on_change, org_id="org", **fields)


def children(ctx: ActivityContext, task_id: str) -> list[MLTask]:
    with ctx.sessions() as session:
        return list(session.scalars(select(MLTask).where(MLTask.parent_task_id == task_id)))


async def finish(client, ctx: ActivityContext, task: MLTask) -> MLTask:
    """Run the task to its end; it leaves splits where a real first optimization does."""
    await (await start(client, task, ctx.settings)).result()
    put_bytes(ctx.store, first_splits_key(task.id), b'{"train": [], "validation": [], "test": ["the locked split"]}')
    return task_row(ctx, task.id)


async def followers_told(client: Client, kb_id: str, builds: int, timeout: float = 30) -> None:
    """Until the knowledge base's ingestion has told its followers of `builds` builds. A task the factory makes records
    no knowledge-base version, so one made before that would be told of a version built before it existed (a task
    created through the API records the version it grounds on, and is not): the tests create their followers after
    it."""

    async def notified() -> int:
        history = await client.get_workflow_handle(ingestion_workflow_id(kb_id)).fetch_history()
        scheduled = {
            e.event_id
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == "notify_followers"
        }
        return sum(
            1
            for e in history.events
            if e.HasField("activity_task_completed_event_attributes")
            and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
        )

    await poll_until(
        notified, lambda told: told >= builds, timeout=timeout, what=f"the ingestion of {kb_id} told of {builds} builds"
    )


def events_after(history, activity: str) -> list[str]:
    """The commands a workflow issued after the last completion of `activity`: `timer_started`, or
    `activity_task_scheduled:<name>`."""
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    last = max(
        i
        for i, e in enumerate(history.events)
        if e.HasField("activity_task_completed_event_attributes")
        and scheduled[e.activity_task_completed_event_attributes.scheduled_event_id] == activity
    )
    out = []
    for e in history.events[last + 1 :]:
        if e.HasField("timer_started_event_attributes"):
            out.append("timer_started")
        elif e.HasField("activity_task_scheduled_event_attributes"):
            out.append(f"activity_task_scheduled:{scheduled[e.event_id]}")
    return out


async def started_workflow(
    client: Client, workflow_id: str, timeout: float = 30
) -> WorkflowHandle[RetrainWorkflow, RetrainResult]:
    """The handle of the retrain workflow that something else starts, once it has been started."""
    handle = client.get_workflow_handle_for(RetrainWorkflow.run, workflow_id)

    async def started() -> bool:
        try:
            await handle.describe()
            return True
        except RPCError:
            return False

    await poll_until(started, timeout=timeout, what=f"workflow {workflow_id} started")
    return handle


async def test_several_changes_start_one_incremental_task_that_continues_the_parent(temporal_env, ctx):
    client, fakes = temporal_env.client, FakePhases(ctx)
    kb = new_kb(ctx)
    async with running_workers(client, ctx, fakes.activities()):
        await upload_document(ctx, client, kb, "note-0.md", note(0))
        await wait_for_kb(ctx, kb.id, "READY", version=1)
        await followers_told(client, kb.id, builds=1)
        follower, bystander = following_task(ctx, kb.id), following_task(ctx, kb.id, retrain_on_change=False)
        parent = await finish(client, ctx, follower)
        await finish(client, ctx, bystander)
        assert parent.status == "COMPLETED" and parent.latest_adapter_key

        # two builds, each a change, well within the quiet period (a build takes 1-3 s)
        for i, version in (
            (1, 2),
            (2, 3),
        ):
            await upload_document(ctx, client, kb, f"note-{i}.md", note(i))
            await wait_for_kb(ctx, kb.id, "READY", version=version)
        # the build notifies its followers just after READY
        retrain = await started_workflow(client, retrain_workflow_id(parent.id))
        result = await retrain.result()
        assert (result.knowledge_base_version, result.reason) == (3, "knowledge base changed (2 changes)")
        # the parent had already ended: once it is seen ended, the incremental task starts without a second quiet
        # period (no timer between the task's state and the start)
        after_state = events_after(await retrain.fetch_history(), "task_state")
        assert after_state[0] == "activity_task_scheduled:start_incremental_task", after_state

        [child] = children(ctx, parent.id)
        assert result.incremental_task_id == child.id
        assert (await client.get_workflow_handle_for(FineTuningWorkflow.run, child.id).result()).status == "COMPLETED"
        with pytest.raises(RPCError):  # a task that does not follow its knowledge base is left alone
            await client.get_workflow_handle(retrain_workflow_id(bystander.id)).describe()
        assert children(ctx, bystander.id) == []
        # the newest of the lineage follows now: the next change continues the child, not the parent again
        assert RetrainingActivities(ctx)._followers(kb.id, 4) == [child.id]
        await record_history(retrain, "retrain-settles-once")
        ingestion = client.get_workflow_handle(ingestion_workflow_id(kb.id))
        await ingestion.cancel()
        await record_history(ingestion, "knowledge-ingestion-notify")

    child = task_row(ctx, child.id)
    assert (child.status, child.parent_task_id, child.knowledge_base_id, child.retrain_on_change) == (
        "COMPLETED",
        parent.id,
        kb.id,
        True,
    )
    assert child.started_at is not None  # it took a running slot like any started task
    optimize = next(i for i in fakes.calls["optimize"] if i.task_id == child.id)
    train = next(i for i, _ in fakes.calls["train"] if i.task_id == child.id)
    evaluate = next(i for i in fakes.calls["evaluate"] if i.task_id == child.id)
    # its own copy of the parent's splits, the parent's bad cases to target, the parent's adapter to continue from
    assert optimize.splits_key == first_splits_key(child.id)
    assert ctx.read_json(first_splits_key(child.id)) == ctx.read_json(first_splits_key(parent.id))
    assert optimize.previous_evaluation_key == parent.latest_evaluation_key and optimize.knowledge_base_id == kb.id
    assert train.init_adapter_key == parent.latest_adapter_key
    assert (evaluate.previous_evaluation_key, evaluate.previous_is_parent) == (parent.latest_evaluation_key, True)


async def test_a_running_task_is_not_disturbed_and_continues_once_it_has_completed(temporal_env, ctx):
    client = temporal_env.client
    fakes = FakePhases(ctx, step_seconds=0.5, train_steps=12)  # trains for about 6 s
    kb = new_kb(ctx)
    async with running_workers(client, ctx, fakes.activities()):
        await upload_document(ctx, client, kb, "note-0.md", note(0))
        await wait_for_kb(ctx, kb.id, "READY", version=1)
        await followers_told(client, kb.id, builds=1)
        running = following_task(ctx, kb.id, mode=TaskMode.CONTINUOUS, max_iterations=2)
        handle = await start(client, running, ctx.settings)
        await wait_for_status(ctx, running.id, "TRAINING", iteration=1)
        await upload_document(ctx, client, kb, "note-1.md", note(1))
        await wait_for_kb(ctx, kb.id, "READY", version=2)
        retrain = await started_workflow(client, retrain_workflow_id(running.id))
        assert (await retrain.query(RetrainWorkflow.pending)).version == 2
        assert children(ctx, running.id) == []  # waiting for the task's end
        assert (await handle.result()).status == "COMPLETED"
        put_bytes(ctx.store, first_splits_key(running.id), b"{}")
        result = await retrain.result()
    parent = task_row(ctx, running.id)
    [child] = children(ctx, running.id)
    assert result.incremental_task_id == child.id and child.created_at >= parent.updated_at
    assert [r.iteration for r in (await handle.result()).iterations] == [1, 2]  # both iterations, nothing interrupted
    history = await handle.fetch_history()
    assert not any(e.HasField("workflow_execution_signaled_event_attributes") for e in history.events)


async def test_a_task_cancelled_while_waiting_starts_nothing_and_a_failed_task_is_not_followed(temporal_env, ctx):
    client = temporal_env.client
    fakes = FakePhases(ctx, step_seconds=0.5, train_steps=60)
    kb = new_kb(ctx)
    async with running_workers(client, ctx, fakes.activities()):
        await upload_document(ctx, client, kb, "note-0.md", note(0))
        await wait_for_kb(ctx, kb.id, "READY", version=1)
        await followers_told(client, kb.id, builds=1)
        running = following_task(ctx, kb.id)
        handle = await start(client, running, ctx.settings)
        await wait_for_status(ctx, running.id, "TRAINING")
        await upload_document(ctx, client, kb, "note-1.md", note(1))
        await wait_for_kb(ctx, kb.id, "READY", version=2)
        retrain = await started_workflow(client, retrain_workflow_id(running.id))
        await handle.cancel()
        result = await retrain.result()
        assert (result.incremental_task_id, result.reason) == (
            None,
            "the task ended CANCELLED: nothing to continue from",
        )

        failed = following_task(ctx, kb.id)
        with ctx.sessions.begin() as session:  # as a failed run leaves it
            session.get(MLTask, failed.id).status = "FAILED"
        await upload_document(ctx, client, kb, "note-2.md", note(2))
        await wait_for_kb(ctx, kb.id, "READY", version=3)
        assert RetrainingActivities(ctx)._followers(kb.id, 3) == []
    for task in (running, failed):
        assert children(ctx, task.id) == []
    with pytest.raises(RPCError):
        await client.get_workflow_handle(retrain_workflow_id(failed.id)).describe()


async def test_a_change_notice_reaches_only_the_tasks_that_grounded_on_an_older_version(temporal_env, ctx):
    """The race of a task created (or an incremental task started) just after a build: it grounds on that build's
    version already, so the build's notice is not news to it; a notice that does reach such a task starts nothing."""
    client, fakes = temporal_env.client, FakePhases(ctx)
    kb = new_kb(ctx)
    unknown, older, same, newer = (
        following_task(ctx, kb.id, knowledge_base_version=version) for version in (None, 2, 3, 4)
    )
    assert RetrainingActivities(ctx)._followers(kb.id, 3) == [unknown.id, older.id]

    async with running_workers(client, ctx, fakes.activities()):
        grounded = await finish(client, ctx, same)
        # told anyway (a notice sent before its version was recorded): it waits for the task, then starts nothing
        retrain = await client.start_workflow(
            RetrainWorkflow.run,
            RetrainInput(
                task_id=grounded.id,
                org_id="org",
                knowledge_base_id=kb.id,
                quiet_seconds=0.5,
                poll_seconds=0.3,
                version=3,
            ),
            id=retrain_workflow_id(grounded.id),
            task_queue=TASK_QUEUE_WORKFLOWS,
        )
        result = await retrain.result()
    assert (result.incremental_task_id, result.reason) == (
        None,
        "the task already grounded on version 3: nothing new to learn",
    )
    assert children(ctx, grounded.id) == []
