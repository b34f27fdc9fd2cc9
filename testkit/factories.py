"""Small factories for database rows, and reading one back."""

from __future__ import annotations

from activities.context import ActivityContext
from core.status import TaskMode, TaskStatus
from db.models import Dataset, MLTask, new_id


def make_task(
    ctx: ActivityContext,
    *,
    mode: TaskMode = TaskMode.STANDARD,
    max_iterations: int = 1,
    threshold: float | None = None,
    model_name: str = "smollm2-135m-instruct",
    hyperparameters: dict | None = None,
    org_id: str = "local",
    **columns,
) -> MLTask:
    """A PENDING task on a (fake) uploaded dataset; `columns` sets other columns (knowledge_base_id=...)."""
    with ctx.sessions.begin() as session:
        dataset = Dataset(
            id=new_id(),
            name="upload",
            storage_key="datasets/local/x/data.jsonl",
            file_format="jsonl",
            size_bytes=1,
            sample_count=1,
            org_id=org_id,
        )
        session.add(dataset)
        session.flush()
        task = MLTask(
            id=new_id(),
            name="test task",
            mode=mode.value,
            status=TaskStatus.PENDING.value,
            model_name=model_name,
            dataset_id=dataset.id,
            org_id=org_id,
            max_iterations=max_iterations,
            performance_threshold=threshold,
            hyperparameters=hyperparameters or {},
            **columns,
        )
        session.add(task)
    return task


def task_row(ctx: ActivityContext, task_id: str) -> MLTask:
    """The task's row as the database has it now."""
    with ctx.sessions() as session:
        task = session.get(MLTask, task_id)
        assert task is not None, f"no task {task_id}"
        return task
