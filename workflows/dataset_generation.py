"""DatasetGenerationWorkflow: a dataset written from a knowledge base (id `gen-<dataset id>`), one phase on the
evaluate pool (it runs a model), its status projected GENERATING -> READY or FAILED."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.generation import GenerationActivities
    from core.settings import TASK_QUEUE_EVALUATE
    from core.status import DatasetStatus, check_dataset_transition
    from schemas.workflow_io import GenerateDatasetInput, GenerateDatasetResult, GenerationInput, RecordDatasetInput
    from workflows.lifecycle import Lifecycle, PhaseOptions, failure_message

PROJECTION_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10)


@workflow.defn(name="DatasetGenerationWorkflow")
class DatasetGenerationWorkflow:
    def __init__(self) -> None:
        self.lifecycle = Lifecycle(DatasetStatus.GENERATING, check_dataset_transition, self._project)
        self._dataset_id = ""

    @workflow.run
    async def run(self, inp: GenerationInput) -> GenerateDatasetResult:
        self._dataset_id = inp.dataset_id
        options = PhaseOptions(
            task_queue=TASK_QUEUE_EVALUATE,
            start_to_close=timedelta(seconds=inp.generate_seconds),
            retry=RetryPolicy(
                initial_interval=timedelta(seconds=inp.retry_initial_seconds), maximum_attempts=inp.max_attempts
            ),
            heartbeat=timedelta(seconds=inp.heartbeat_seconds),
        )
        try:
            result: GenerateDatasetResult = await self.lifecycle.run_phase(
                DatasetStatus.GENERATING,
                GenerationActivities.generate_dataset,
                GenerateDatasetInput(
                    dataset_id=inp.dataset_id,
                    org_id=inp.org_id,
                    knowledge_base_id=inp.knowledge_base_id,
                    model_name=inp.model_name,
                    questions_per_chunk=inp.questions_per_chunk,
                    generator=inp.generator,
                ),
                options,
            )
        except ActivityError as err:
            message = failure_message(err)
            await self.lifecycle.record(DatasetStatus.FAILED, error=message)
            raise ApplicationError(message, type="GenerationFailed", non_retryable=True) from err
        await self.lifecycle.record(DatasetStatus.READY)
        return result

    async def _project(self, status: DatasetStatus, error: str | None = None, **_: Any) -> None:
        await workflow.execute_local_activity_method(
            GenerationActivities.record_dataset,
            RecordDatasetInput(dataset_id=self._dataset_id, status=status.value, error=error),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PROJECTION_RETRY,
        )
