"""PromotionGateWorkflow (id `gate-<gate id>`): evaluate the candidate, the alias's current version and the base model
on the same locked test questions, then run the suites the alias requires against the candidate (evaluate pool), then
decide and move the alias (bookkeeping). Its status is projected EVALUATING -> PROMOTED | REFUSED (by the decision) or
FAILED (the evaluation or a suite could not run)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.registry import RegistryActivities
    from activities.suites import SuiteActivities
    from core.settings import TASK_QUEUE_BOOKKEEPING, TASK_QUEUE_EVALUATE
    from core.status import GateStatus, check_gate_transition
    from schemas.workflow_io import (
        ConcludeGateInput,
        ConcludeGateResult,
        GateEvaluateInput,
        GateEvaluateResult,
        PromotionGateInput,
        RecordGateInput,
        RunSuiteInput,
    )
    from workflows.lifecycle import Lifecycle, PhaseOptions, failure_message

BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10)


@workflow.defn(name="PromotionGateWorkflow")
class PromotionGateWorkflow:
    def __init__(self) -> None:
        self.lifecycle = Lifecycle(GateStatus.EVALUATING, check_gate_transition, self._project)
        self._gate_id = ""

    @workflow.run
    async def run(self, inp: PromotionGateInput) -> ConcludeGateResult:
        self._gate_id = inp.gate_id
        timeouts = inp.timeouts
        options = PhaseOptions.on_queue(TASK_QUEUE_EVALUATE, timeouts.evaluate_seconds, timeouts)
        try:
            evaluated: GateEvaluateResult = await self.lifecycle.run_phase(
                GateStatus.EVALUATING,
                RegistryActivities.evaluate_for_promotion,
                GateEvaluateInput(
                    gate_id=inp.gate_id,
                    org_id=inp.org_id,
                    base_model=inp.base_model,
                    candidate=inp.candidate,
                    current=inp.current,
                    test_sets=inp.test_sets,
                    mode=inp.mode,
                    margin=inp.margin,
                    knowledge_base_id=inp.knowledge_base_id,
                    retrieval_top_k=inp.retrieval_top_k,
                    significance=inp.significance,
                    context_statements=inp.context_statements,
                ),
                options,
            )
            # only inputs that name suite runs issue these: no history recorded before suites holds one
            for run_id in inp.suite_run_ids:
                await workflow.execute_activity_method(
                    SuiteActivities.run_suite,
                    RunSuiteInput(run_id=run_id),
                    task_queue=options.task_queue,
                    start_to_close_timeout=options.start_to_close,
                    heartbeat_timeout=options.heartbeat,
                    retry_policy=options.retry,
                )
        except ActivityError as err:
            message = failure_message(err)
            await self.lifecycle.record(GateStatus.FAILED, error=message)
            raise ApplicationError(message, type="PromotionGateFailed", non_retryable=True) from err
        decided: ConcludeGateResult = await workflow.execute_activity_method(
            RegistryActivities.conclude_promotion,
            ConcludeGateInput(gate_id=inp.gate_id, figures=evaluated.figures),
            task_queue=TASK_QUEUE_BOOKKEEPING,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=BOOKKEEPING_RETRY,
        )
        self.lifecycle.status = GateStatus(decided.status)  # written by the decision itself, with the alias move
        return decided

    @workflow.query
    def status(self) -> str:
        return self.lifecycle.status.value

    async def _project(self, status: GateStatus, error: str | None = None, **_: Any) -> None:
        await workflow.execute_local_activity_method(
            RegistryActivities.record_gate,
            RecordGateInput(gate_id=self._gate_id, status=status.value, error=error),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BOOKKEEPING_RETRY,
        )
