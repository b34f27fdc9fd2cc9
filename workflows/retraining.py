"""RetrainWorkflow: one per task that follows its knowledge base (id `retrain-<task id>`), started by the first
`knowledge_changed` signal after a build that changed content.

Changes are debounced: the workflow waits until none has arrived for `quiet_seconds`, so several uploads start one
incremental task, not several. A task that is still running is never disturbed: the workflow waits (polling its
state) until it ends, lets the changes made meanwhile settle the same way, then starts one incremental task from it
if it COMPLETED, with the newest version signalled. A task that had already ended starts its incremental task right
after the first quiet period.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.retraining import RetrainingActivities
    from core.settings import TASK_QUEUE_BOOKKEEPING
    from core.status import TERMINAL_STATUSES, TaskStatus
    from schemas.workflow_io import (
        KnowledgeChanged,
        RetrainInput,
        RetrainPending,
        RetrainResult,
        StartIncrementalInput,
        TaskStateInput,
        TaskStateResult,
    )
    from workflows.lifecycle import wait_until_quiet

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=10)
# at the organization's running-task limit the start fails as RateLimited: it is retried until a slot frees
START_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5), maximum_attempts=0
)


@workflow.defn(name="RetrainWorkflow")
class RetrainWorkflow:
    def __init__(self) -> None:
        self._version = 0
        self._changes = 0

    @workflow.signal
    def knowledge_changed(self, change: KnowledgeChanged) -> None:
        self._version = max(self._version, change.version)
        self._changes += 1

    @workflow.query
    def pending(self) -> RetrainPending:
        return RetrainPending(version=self._version, changes=self._changes)

    @workflow.run
    async def run(self, inp: RetrainInput) -> RetrainResult:
        self._version = max(self._version, inp.version)
        await wait_until_quiet(lambda: self._changes, inp.quiet_seconds)
        waited_for_the_task = False
        while True:
            state: TaskStateResult = await workflow.execute_activity_method(
                RetrainingActivities.task_state,
                TaskStateInput(task_id=inp.task_id),
                task_queue=TASK_QUEUE_BOOKKEEPING,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
            )
            if state.child_task_id:
                return RetrainResult(
                    task_id=inp.task_id,
                    incremental_task_id=state.child_task_id,
                    knowledge_base_version=self._version,
                    reason="an incremental task was already started",
                )
            if state.status in TERMINAL_STATUSES or state.status == "DELETED":
                break
            # still running: never disturbed, picked up after it ends
            await workflow.sleep(timedelta(seconds=inp.poll_seconds))
            waited_for_the_task = True
        if state.status != TaskStatus.COMPLETED:
            return RetrainResult(
                task_id=inp.task_id,
                incremental_task_id=None,
                knowledge_base_version=self._version,
                reason=f"the task ended {state.status}: nothing to continue from",
            )
        # changes made while the task ran settle too; a task that had already ended gave them no time to arrive, so
        # the quiet period already waited is not waited again (runs before the patch waited it twice)
        if waited_for_the_task or not workflow.patched("retrain-settles-again-only-after-waiting-for-the-task"):
            await wait_until_quiet(lambda: self._changes, inp.quiet_seconds)
        if (
            workflow.patched("retrain-only-for-a-newer-knowledge-base")
            and state.knowledge_base_version is not None
            and state.knowledge_base_version >= self._version
        ):
            return RetrainResult(
                task_id=inp.task_id,
                incremental_task_id=None,
                knowledge_base_version=self._version,
                reason=f"the task already grounded on version {state.knowledge_base_version}: nothing new to learn",
            )
        child = await workflow.execute_activity_method(
            RetrainingActivities.start_incremental_task,
            StartIncrementalInput(parent_task_id=inp.task_id, knowledge_base_version=self._version),
            task_queue=TASK_QUEUE_BOOKKEEPING,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=START_RETRY,
        )
        return RetrainResult(
            task_id=inp.task_id,
            incremental_task_id=child,
            knowledge_base_version=self._version,
            reason=f"knowledge base changed ({self._changes} changes)",
        )
