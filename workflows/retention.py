"""RetentionWorkflow: one pass of pruning the QA history and finished tasks' events past each organization's limits.
A Temporal schedule (`retention`, made by the workflow pool when it starts) runs one every
`retention_interval_hours`; the pass's time is the workflow's, so a retried activity prunes to the same cut-off."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.retention import RetentionActivities
    from core.settings import TASK_QUEUE_BOOKKEEPING
    from schemas.workflow_io import PruneExpiredInput, RetentionInput, RetentionResult


@workflow.defn(name="RetentionWorkflow")
class RetentionWorkflow:
    @workflow.run
    async def run(self, inp: RetentionInput) -> RetentionResult:
        return await workflow.execute_activity_method(
            RetentionActivities.prune_expired_records,
            PruneExpiredInput(now=workflow.now().isoformat()),
            task_queue=TASK_QUEUE_BOOKKEEPING,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=5),
        )
