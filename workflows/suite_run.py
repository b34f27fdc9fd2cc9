"""SuiteRunWorkflow (id `suite-run-<run id>`): the model answers every case of the suite and each answer is judged
(evaluate pool, `run_suite`, which stores the answers and verdicts with the run); a run that cannot answer is marked
FAILED with the reason (bookkeeping)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.suites import SuiteActivities
    from core.settings import TASK_QUEUE_BOOKKEEPING, TASK_QUEUE_EVALUATE
    from schemas.workflow_io import ActivityTimeouts, FailSuiteRunInput, RunSuiteInput, RunSuiteResult, SuiteRunInput
    from workflows.lifecycle import PhaseOptions, failure_message

BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10)


def evaluating(timeouts: ActivityTimeouts) -> dict:
    """The options of an activity that answers suite cases on the evaluate pool (a suite run, a release's shadow)."""
    return PhaseOptions.on_queue(TASK_QUEUE_EVALUATE, timeouts.evaluate_seconds, timeouts).activity_options()


@workflow.defn(name="SuiteRunWorkflow")
class SuiteRunWorkflow:
    @workflow.run
    async def run(self, inp: SuiteRunInput) -> RunSuiteResult:
        timeouts = inp.timeouts
        try:
            return await workflow.execute_activity_method(
                SuiteActivities.run_suite,
                RunSuiteInput(run_id=inp.run_id),
                **evaluating(timeouts),
            )
        except ActivityError as err:
            message = failure_message(err)
            await workflow.execute_activity_method(
                SuiteActivities.fail_suite_run,
                FailSuiteRunInput(run_id=inp.run_id, error=message),
                task_queue=TASK_QUEUE_BOOKKEEPING,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=BOOKKEEPING_RETRY,
            )
            raise ApplicationError(message, type="SuiteRunFailed", non_retryable=True) from err
