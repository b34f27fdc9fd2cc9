"""Workflow behaviour on a real Temporal server, with fake phase activities and the real database projection."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.context import ActivityContext
from cli.stack import temporal_binary
from core.settings import TASK_QUEUE_WORKFLOWS
from core.status import TaskMode
from db.models import Dataset, ModelVersion, TaskExecution
from schemas.workflow_io import RecordProgressInput
from storage import keys
from temporal_client.workflows import FineTuningWorkflow
from testkit.factories import make_task, task_row
from testkit.histories import record_history
from testkit.phases import FakePhases, running_workers, wait_for_status
from testkit.workflows import fast_input, start


@pytest.fixture
def ctx(settings) -> ActivityContext:
    return ActivityContext.from_settings(settings)


def logging_transitions(fakes: FakePhases) -> tuple[dict[str, list], list[tuple[int, str]]]:
    """The fakes' activities with the real `record_progress` wrapped to log each (iteration, status) it writes."""
    activities = fakes.activities()
    real = activities[TASK_QUEUE_WORKFLOWS][0]
    log: list[tuple[int, str]] = []

    @activity.defn(name="record_progress")
    def record_progress(inp: RecordProgressInput) -> None:
        real(inp)
        if not log or log[-1] != (inp.iteration, inp.status):  # phase events repeat the status: keep transitions only
            log.append((inp.iteration, inp.status))

    activities[TASK_QUEUE_WORKFLOWS] = [record_progress, *activities[TASK_QUEUE_WORKFLOWS][1:]]
    return activities, log


def looped_transitions(iterations: int) -> list[tuple[int, str]]:
    phases = [
        (n, status) for n in range(1, iterations + 1) for status in ("OPTIMIZING", "TRAINING", "EVALUATING", "LOOPING")
    ]
    return phases[:-1] + [(iterations, "COMPLETED")]


async def runs_of(client, workflow_id: str) -> list:
    """The workflow's runs (the first one first), each with its history."""
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    histories = [await client.get_workflow_handle(workflow_id, run_id=r.run_id).fetch_history() for r in runs]
    return sorted(histories, key=lambda h: h.events[0].event_time.ToDatetime())


def continued_as_new(history) -> bool:
    return history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")


def scheduled(history, activity_type: str) -> int:
    return sum(
        1
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    )


def executions(ctx, task_id) -> list[tuple[int, str, str]]:
    with ctx.sessions() as session:
        rows = session.scalars(select(TaskExecution).where(TaskExecution.task_id == task_id).order_by(TaskExecution.id))
        return [(e.iteration, e.phase, e.status) for e in rows]


async def test_standard_run_completes_and_projects_every_transition(temporal_env, ctx, settings):
    task = make_task(ctx)
    fakes = FakePhases(ctx)
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        result = await handle.result()
        progress = await handle.query(FineTuningWorkflow.progress)
    await record_history(handle, "standard")
    assert result.status == "COMPLETED" and result.stop_reason == "standard task"
    assert [r.iteration for r in result.iterations] == [1]
    assert progress.status == "COMPLETED" and progress.scores[0].test == 0.3
    row = task_row(ctx, task.id)
    assert row.status == "COMPLETED" and row.latest_score == 0.3 and row.report_key.endswith("report.json")
    assert row.current_dataset_id == f"{task.id}-opt1" and row.latest_adapter_key.endswith("iter-1/adapter/")
    assert executions(ctx, task.id) == [
        (1, "OPTIMIZING", "COMPLETED"),
        (1, "TRAINING", "COMPLETED"),
        (1, "EVALUATING", "COMPLETED"),
    ]
    # every phase activity carries the task's organization
    assert (
        fakes.calls["optimize"][0].org_id
        == fakes.calls["train"][0][0].org_id
        == fakes.calls["evaluate"][0].org_id
        == task.org_id
    )


async def test_continuous_run_stops_at_max_iterations_in_one_run(temporal_env, ctx, settings):
    task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=3)
    fakes = FakePhases(ctx)
    activities, transitions = logging_transitions(fakes)
    assert fast_input(task, settings).iterations_per_run == 10  # the default bound: 3 iterations fit in one run
    async with running_workers(temporal_env.client, ctx, activities):
        handle = await start(temporal_env.client, task, settings)
        result = await handle.result()
    await record_history(handle, "continuous")
    assert [r.iteration for r in result.iterations] == [1, 2, 3]
    assert result.stop_reason == "reached max_iterations=3"
    # every iteration ran inside the first run: no continue-as-new
    runs = await runs_of(temporal_env.client, task.id)
    assert len(runs) == 1 and not continued_as_new(runs[0])
    assert scheduled(runs[0], "optimize_dataset") == 3
    assert (await handle.describe()).run_id == handle.first_execution_run_id
    # LOOPING is still recorded between two iterations
    assert transitions == looped_transitions(3)
    # later iterations optimize from the previous evaluation and train from the previous adapter
    assert [c.previous_evaluation_key is not None for c in fakes.calls["optimize"]] == [False, True, True]
    assert [c[0].init_adapter_key is not None for c in fakes.calls["train"]] == [False, True, True]
    assert [[r.iteration for r in c.iterations] for c in fakes.calls["report"]] == [[1, 2, 3]]
    assert task_row(ctx, task.id).current_iteration == 3
    assert len(executions(ctx, task.id)) == 9


async def test_continuous_run_continues_as_new_every_iterations_per_run_until_max_iterations(
    temporal_env, ctx, settings
):
    task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=3)
    fakes = FakePhases(ctx)
    activities, transitions = logging_transitions(fakes)
    async with running_workers(temporal_env.client, ctx, activities):
        handle = await start(temporal_env.client, task, settings, iterations_per_run=2)
        result = await handle.result()
        progress = await handle.query(FineTuningWorkflow.progress)
    await record_history(handle, "continuous-boundary")
    assert result.status == "COMPLETED" and result.stop_reason == "reached max_iterations=3"
    assert [r.iteration for r in result.iterations] == [1, 2, 3]
    assert [s.iteration for s in progress.scores] == [1, 2, 3]
    # two iterations in the first run, which continued as new; the third in the second run
    runs = await runs_of(temporal_env.client, task.id)
    assert len(runs) == 2
    assert continued_as_new(runs[0]) and not continued_as_new(runs[1])
    assert [scheduled(run, "optimize_dataset") for run in runs] == [2, 1]
    assert (await handle.describe()).run_id != handle.first_execution_run_id
    # the state carried across the boundary: the third iteration builds on the second, the report lists all three
    assert transitions == looped_transitions(3)
    assert [c.previous_evaluation_key is not None for c in fakes.calls["optimize"]] == [False, True, True]
    assert [c[0].init_adapter_key is not None for c in fakes.calls["train"]] == [False, True, True]
    assert [[r.iteration for r in c.iterations] for c in fakes.calls["report"]] == [[1, 2, 3]]
    row = task_row(ctx, task.id)
    assert row.status == "COMPLETED" and row.current_iteration == 3
    assert len(executions(ctx, task.id)) == 9


async def test_continuous_run_continues_as_new_when_the_server_suggests_it(ctx, settings):
    # a server that suggests continue-as-new after a few events: every iteration boundary hands over despite the default
    # bound
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_log_level="error",
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=10"],
    )
    try:
        task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=3)
        fakes = FakePhases(ctx)
        async with running_workers(env.client, ctx, fakes.activities()):
            result = await (await start(env.client, task, settings)).result()
        runs = await runs_of(env.client, task.id)
    finally:
        await env.shutdown()
    assert [r.iteration for r in result.iterations] == [1, 2, 3]
    assert [continued_as_new(run) for run in runs] == [True, True, False]
    assert [scheduled(run, "optimize_dataset") for run in runs] == [1, 1, 1]


async def test_continuous_run_stops_when_the_feedback_split_reaches_the_threshold(temporal_env, ctx, settings):
    """The loop decides on the feedback split's share of right answers, never on the locked test split (whose blended
    score passes the threshold from the first iteration here)."""
    task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=5, threshold=0.5)
    fakes = FakePhases(ctx, test_scores=[0.9, 0.9, 0.9], feedback_accuracies=[0.2, 0.6, 0.9])
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        result = await handle.result()
        await record_history(handle, "continuous-feedback-threshold")
    assert [r.feedback_accuracy for r in result.iterations] == [0.2, 0.6]
    assert result.stop_reason == "feedback fact accuracy 0.6000 reached the threshold 0.5"
    assert task_row(ctx, task.id).status == "COMPLETED"


async def test_the_task_keeps_and_registers_its_best_iteration_on_the_feedback_split(temporal_env, ctx, settings):
    """The last iteration lost feedback answers the second had right: the task keeps the second (reports it as final and
    registers its adapter), though the test split, only ever reported, is best for the third."""
    task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=3)
    fakes = FakePhases(ctx, test_scores=[0.3, 0.5, 0.9], feedback_accuracies=[0.2, 0.6, 0.4])
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        result = await handle.result()
        await record_history(handle, "continuous-keeps-best-feedback")
    assert result.stop_reason == "reached max_iterations=3"
    (report,) = fakes.calls["report"]
    assert report.final_iteration == 2 and report.final_because == "the most feedback answers right (0.600)"
    with ctx.sessions() as session:
        registered = session.scalars(select(ModelVersion).where(ModelVersion.task_id == task.id)).all()
    assert [(v.version, v.iteration) for v in registered] == [(1, 2)]
    assert registered[0].adapter_key == keys.model_prefix(task.id, 2) + "adapter/"


async def test_without_fact_checks_the_threshold_reads_the_feedback_blended_score(temporal_env, ctx, settings):
    task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=5, threshold=0.5)
    fakes = FakePhases(ctx, test_scores=[0.3, 0.55, 0.9])  # the fakes' feedback score is the same figure
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        result = await (await start(temporal_env.client, task, settings)).result()
    assert [r.feedback_score for r in result.iterations] == [0.3, 0.55]
    assert result.stop_reason == "feedback score 0.5500 reached the threshold 0.5"


async def test_a_crashed_activity_is_retried_then_succeeds(temporal_env, ctx, settings):
    task = make_task(ctx)
    fakes = FakePhases(ctx, fail_train_attempts=1)
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        result = await (await start(temporal_env.client, task, settings)).result()
    assert [attempt for _, attempt in fakes.calls["train"]] == [1, 2]
    assert result.status == "COMPLETED"


async def test_a_non_retryable_error_fails_the_task_with_its_message(temporal_env, ctx, settings):
    task = make_task(ctx)
    fakes = FakePhases(ctx, optimize_error="only 3 usable examples after cleaning")
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert len(fakes.calls["optimize"]) == 1  # not retried
    row = task_row(ctx, task.id)
    assert row.status == "FAILED" and "only 3 usable examples" in row.error
    assert executions(ctx, task.id) == [(1, "OPTIMIZING", "FAILED")]
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED


async def test_pause_checkpoints_training_and_resume_continues_from_it(temporal_env, ctx, settings):
    task = make_task(ctx)
    fakes = FakePhases(ctx, train_steps=200, step_seconds=0.02)
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        await wait_for_status(ctx, task.id, "TRAINING")
        await handle.signal(FineTuningWorkflow.pause)
        suspended = await wait_for_status(ctx, task.id, "SUSPENDED")
        assert suspended.suspended_from == "TRAINING"
        assert executions(ctx, task.id)[-1] == (1, "TRAINING", "SUSPENDED")
        assert (await handle.query(FineTuningWorkflow.progress)).status == "SUSPENDED"
        await handle.signal(FineTuningWorkflow.resume)
        result = await handle.result()
    first, second = fakes.calls["train"]
    assert result.status == "COMPLETED"
    assert 0 < result.iterations[0].resumed_from_step < 200
    assert executions(ctx, task.id)[1] == (1, "TRAINING", "COMPLETED")


async def test_pause_and_resume_updates_are_decided_by_the_workflow(temporal_env, ctx, settings):
    task = make_task(ctx)
    fakes = FakePhases(ctx, train_steps=200, step_seconds=0.02)
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        await wait_for_status(ctx, task.id, "TRAINING")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(FineTuningWorkflow.request_resume)
        assert refused.value.cause.message == f"cannot resume task {task.id}: it is TRAINING, not SUSPENDED"
        assert await handle.execute_update(FineTuningWorkflow.request_pause) == "TRAINING"
        await wait_for_status(ctx, task.id, "SUSPENDED")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(FineTuningWorkflow.request_pause)
        assert refused.value.cause.message == f"cannot pause task {task.id}: it is SUSPENDED"
        assert await handle.execute_update(FineTuningWorkflow.request_resume) == "TRAINING"
        result = await handle.result()
        with pytest.raises(RPCError):  # a closed workflow takes no more commands
            await handle.execute_update(FineTuningWorkflow.request_cancel)
    await record_history(handle, "pause-updates")
    assert result.status == "COMPLETED" and 0 < result.iterations[0].resumed_from_step < 200
    assert executions(ctx, task.id) == [
        (1, "OPTIMIZING", "COMPLETED"),
        (1, "TRAINING", "COMPLETED"),
        (1, "EVALUATING", "COMPLETED"),
    ]


async def test_a_cancel_update_is_accepted_then_temporal_cancels_and_the_workflow_compensates(
    temporal_env, ctx, settings
):
    task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=2)
    fakes = FakePhases(ctx, train_steps=500, step_seconds=0.02, train_steps_by_iteration={1: 5})
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        await wait_for_status(ctx, task.id, "TRAINING", iteration=2)
        assert await handle.execute_update(FineTuningWorkflow.request_cancel) == "TRAINING"
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    await record_history(handle, "cancel-update")
    assert task_row(ctx, task.id).status == "CANCELLED"
    assert executions(ctx, task.id)[-1] == (2, "TRAINING", "CANCELLED")
    assert ctx.store.list(keys.model_prefix(task.id, 2)) == [] and ctx.store.list(keys.model_prefix(task.id, 1))


async def test_pause_and_resume_inside_a_later_iteration_of_the_loop(temporal_env, ctx, settings):
    task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=2)
    fakes = FakePhases(ctx, train_steps=5, step_seconds=0.02, train_steps_by_iteration={2: 200})
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        await wait_for_status(ctx, task.id, "TRAINING", iteration=2)
        await handle.signal(FineTuningWorkflow.pause)
        suspended = await wait_for_status(ctx, task.id, "SUSPENDED")
        assert suspended.suspended_from == "TRAINING" and suspended.current_iteration == 2
        progress = await handle.query(FineTuningWorkflow.progress)
        assert progress.status == "SUSPENDED" and progress.iteration == 2 and len(progress.scores) == 1
        await handle.signal(FineTuningWorkflow.resume)
        result = await handle.result()
    assert [r.iteration for r in result.iterations] == [1, 2]
    assert result.iterations[0].resumed_from_step == 0 and 0 < result.iterations[1].resumed_from_step < 200
    assert len(await runs_of(temporal_env.client, task.id)) == 1
    assert executions(ctx, task.id)[3:] == [
        (2, "OPTIMIZING", "COMPLETED"),
        (2, "TRAINING", "COMPLETED"),
        (2, "EVALUATING", "COMPLETED"),
    ]


async def test_cancel_compensates_the_unfinished_iteration_and_keeps_finished_ones(temporal_env, ctx, settings):
    task = make_task(ctx, mode=TaskMode.CONTINUOUS, max_iterations=3)
    # iteration 1 trains quickly; iteration 2 is still training when cancelled (LOOPING in between is too brief to wait
    # for)
    fakes = FakePhases(ctx, train_steps=500, step_seconds=0.02, train_steps_by_iteration={1: 5})
    store = ctx.store
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        handle = await start(temporal_env.client, task, settings)
        await wait_for_status(ctx, task.id, "TRAINING", iteration=2)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()  # the workflow closes right after compensation has written CANCELLED
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert store.list(keys.model_prefix(task.id, 1)), "the finished iteration's adapter is kept"
    assert store.list(keys.evaluation_prefix(task.id, 1))
    assert store.list(keys.model_prefix(task.id, 2)) == [], "the unfinished iteration's artifacts are deleted"
    assert store.list(keys.optimized_prefix(f"{task.id}-opt2")) == []
    with ctx.sessions() as session:
        assert session.get(Dataset, f"{task.id}-opt1") is not None
        assert session.get(Dataset, f"{task.id}-opt2") is None
    rows = executions(ctx, task.id)
    assert rows[:3] == [(1, "OPTIMIZING", "COMPLETED"), (1, "TRAINING", "COMPLETED"), (1, "EVALUATING", "COMPLETED")]
    assert rows[-1] == (2, "TRAINING", "CANCELLED")
    row = task_row(ctx, task.id)
    assert row.status == "CANCELLED" and row.current_dataset_id == f"{task.id}-opt1"


async def test_starting_twice_is_idempotent(temporal_env, ctx, settings):
    from services.tasks import start_task

    task = make_task(ctx)
    fakes = FakePhases(ctx, train_steps=50, step_seconds=0.02)
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        with ctx.sessions() as session:

            async def connection():
                return temporal_env.client

            await start_task(session, connection, settings, task.id, org_id=task.org_id)
            first = await temporal_env.client.get_workflow_handle_for(FineTuningWorkflow.run, task.id).describe()
            await start_task(session, connection, settings, task.id, org_id=task.org_id)
            second = await temporal_env.client.get_workflow_handle_for(FineTuningWorkflow.run, task.id).describe()
        assert first.run_id == second.run_id
        await temporal_env.client.get_workflow_handle_for(FineTuningWorkflow.run, task.id).result()
    runs = [w async for w in temporal_env.client.list_workflows(f"WorkflowId = '{task.id}'")]
    assert len(runs) == 1
    assert len(fakes.calls["optimize"]) == 1
