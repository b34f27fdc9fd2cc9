"""Small factories for database rows, and reading one back."""

from __future__ import annotations

from typing import TypeVar

from activities.context import ActivityContext
from core.status import TaskMode, TaskStatus
from db.models import Base, Dataset, MLTask, ModelVersion, new_id

Row = TypeVar("Row", bound=Base)


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


def row(ctx: ActivityContext, model: type[Row], row_id: str) -> Row:
    """The row of `model` with `row_id` as the database has it now (it must exist)."""
    with ctx.sessions() as session:
        found = session.get(model, row_id)
        assert found is not None, f"no {model.__tablename__} row {row_id}"
        return found


def task_row(ctx: ActivityContext, task_id: str) -> MLTask:
    """The task's row as the database has it now."""
    return row(ctx, MLTask, task_id)


def version_row(
    *,
    model_id: str,
    org_id: str,
    number: int,
    task_id: str,
    adapter_key: str,
    splits_key: str | None = None,
    size_bytes: int = 1,
    sha256: str = "0" * 64,
) -> ModelVersion:
    """A READY registered version of a task's first iteration, as registering it leaves the row (not yet added)."""
    return ModelVersion(
        id=new_id(),
        model_id=model_id,
        org_id=org_id,
        version=number,
        adapter_key=adapter_key,
        sha256=sha256,
        size_bytes=size_bytes,
        status="READY",
        task_id=task_id,
        iteration=1,
        hyperparameters={},
        serving_mode="closed_book",
        scores={},
        splits_key=splits_key or f"optimized/{task_id}-opt1/splits.json",
        evaluation_key=f"evaluations/{task_id}/iter-1/evaluation.json",
    )
