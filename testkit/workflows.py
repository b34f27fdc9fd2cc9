"""Starting the fine-tuning workflow as the service would (by its declaration in temporal_client.workflows), with
retries and heartbeats short enough for tests."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle

from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from db.models import MLTask
from schemas.workflow_io import FineTuningInput, FineTuningResult
from services.tasks import workflow_input
from temporal_client.workflows import FineTuningWorkflow


def fast_input(task: MLTask, settings: Settings, **fields: Any) -> FineTuningInput:
    """The task's workflow input with a 0.1 s first retry and 5 s heartbeats; `fields` set other input fields."""
    inp = workflow_input(task, settings)
    inp.timeouts.retry_initial_seconds = 0.1
    inp.timeouts.heartbeat_seconds = 5
    for name, value in fields.items():
        setattr(inp, name, value)
    return inp


async def start(
    client: Client, task: MLTask, settings: Settings, **fields: Any
) -> WorkflowHandle[FineTuningWorkflow, FineTuningResult]:
    """Start the task's workflow (its id is the task's id) on the control queue."""
    return await client.start_workflow(
        FineTuningWorkflow.run, fast_input(task, settings, **fields), id=task.id, task_queue=TASK_QUEUE_WORKFLOWS
    )
