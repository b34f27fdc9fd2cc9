"""Incremental tasks: a task that continues a finished one, from its final adapter, on its splits.

Two things start one: a knowledge base that changed under a task that follows it (`RetrainWorkflow`), and a user's
feedback round, which adds a dataset of corrected answers to the parent's training split. A task has at most one
incremental task (its lineage's newest is the one that continues).
"""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from core.errors import Conflict, DomainError, Unavailable
from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from core.status import TaskStatus
from db.models import Dataset, DatasetVersion, KnowledgeBase, MLTask, new_id
from ml.optimizer import Splits, follow_dataset
from schemas.api import FeedbackRoundCreate
from schemas.workflow_io import FineTuningInput, LoopState
from services import dataset_versions as versions
from services.datasets import ready_dataset
from services.registry import default_model_name
from services.tasks import Temporal, claim_running_slot, get_task, workflow_input
from storage import keys
from storage.object_store import ObjectNotFound, ObjectStore, get_bytes, put_bytes
from temporal_client.workflows import FineTuningWorkflow


def child_of(session: Session, parent_id: str) -> MLTask | None:
    return session.scalar(select(MLTask).where(MLTask.parent_task_id == parent_id))


def dataset_head(session: Session, store: ObjectStore, task: MLTask, version: int | None) -> DatasetVersion | None:
    """A version (by default the head) of the task's dataset; None when the dataset is gone or takes no versions."""
    dataset = session.get(Dataset, task.dataset_id)
    if dataset is None or dataset.is_optimized:
        return None
    try:
        return versions.get_version(session, store, task.org_id, dataset.id, version or dataset.version)
    except (DomainError, ObjectNotFound):  # a dataset whose file is gone has no version to follow
        return None


def continue_task(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    parent: MLTask,
    *,
    name: str,
    knowledge_base_version: int | None,
    corrections: DatasetVersion | None = None,
    created_by: str | None = None,
) -> tuple[MLTask, FineTuningInput]:
    """The task that continues the finished `parent` (made once: a later call finds it) and its workflow's input: the
    parent's final adapter, its splits brought to its dataset's head version (rows marked stale or excluded since
    are left out, corrected ones take their new answers), the knowledge base as it is now, and `corrections`, whose
    rows all join the training split. Counts against the organization's running tasks (RateLimited at the limit)."""
    child = child_of(session, parent.id)
    if child is None:
        head = dataset_head(session, store, parent, None)
        child = MLTask(
            id=f"{parent.id[:20]}-inc-{new_id()[:8]}",
            name=name[:200],
            mode=parent.mode,
            status=TaskStatus.PENDING.value,
            model_name=parent.model_name,
            dataset_id=parent.dataset_id,
            # the dataset's head: rows marked stale (or otherwise excluded or corrected) since the parent was created
            # count
            dataset_version=head.version if head else parent.dataset_version,
            org_id=parent.org_id,
            created_by=created_by or parent.created_by,
            current_iteration=0,
            max_iterations=parent.max_iterations,
            performance_threshold=parent.performance_threshold,
            hyperparameters=dict(parent.hyperparameters or {}),
            knowledge_base_id=parent.knowledge_base_id,
            retrieval_top_k=parent.retrieval_top_k,
            context_statements=parent.context_statements,
            retrain_on_change=parent.retrain_on_change,
            parent_task_id=parent.id,
            register_as=parent.register_as or default_model_name(parent.name),
            # what it will ground on (its optimization records a newer version if one comes first)
            knowledge_base_version=knowledge_base_version,
            corrections_dataset_id=corrections.dataset_id if corrections else None,
            corrections_dataset_version=corrections.version if corrections else None,
        )
        session.add(child)
        claim_running_slot(session, settings, child)  # commits, or rolls back and raises RateLimited
    else:  # a retried attempt: the version the child pinned
        head = dataset_head(session, store, parent, child.dataset_version)
    # the lineage keeps its splits: the child gets its own copy, so it is scored on the very test split its parent
    # was, less the rows its dataset's head now excludes and with the answers it corrected
    splits = json.loads(get_bytes(store, keys.first_splits_key(parent.id)))
    if head is not None and head.version != parent.dataset_version:
        rows = versions.version_rows(store, head)
        splits = follow_dataset(Splits.from_json(splits), [row.record for row in rows]).splits.to_json()
    splits_key = keys.first_splits_key(child.id)
    put_bytes(store, splits_key, json.dumps(splits, ensure_ascii=False, indent=1).encode("utf-8"))
    return child, dataclasses.replace(
        workflow_input(child, settings),
        parent_task_id=parent.id,
        init_adapter_key=parent.latest_adapter_key,
        parent_evaluation_key=parent.latest_evaluation_key,
        state=LoopState(splits_key=splits_key),
    )


async def start_feedback_round(
    session: Session,
    temporal: Temporal,
    store: ObjectStore,
    settings: Settings,
    parent_id: str,
    body: FeedbackRoundCreate,
    *,
    org_id: str,
    created_by: str | None,
) -> MLTask:
    """A feedback round of the finished task `parent_id`, started: an incremental task that trains, from the parent's
    final adapter, on its training split and on every row of `body.dataset_id` (the corrected answers, usually exported
    from the QA history), except rows that copy a held-out question. Its final adapter joins the parent's registered
    model and goes before the gate of every alias that serves the parent's version, as a knowledge update's does."""
    parent = get_task(session, org_id, parent_id)
    if parent.status != TaskStatus.COMPLETED.value:
        raise Conflict(f"task {parent_id} is {parent.status}: a feedback round continues a COMPLETED task")
    existing = child_of(session, parent.id)
    if existing is not None:
        raise Conflict(
            f"task {parent_id} is already continued by task {existing.id}: start the feedback round from the newest "
            "task of the lineage"
        )
    if parent.latest_adapter_key is None:
        raise Conflict(f"task {parent_id} has no final adapter to continue from")
    dataset = ready_dataset(session, org_id, body.dataset_id)
    corrections = versions.get_version(session, store, org_id, dataset.id, body.dataset_version or dataset.version)
    kb = session.get(KnowledgeBase, parent.knowledge_base_id) if parent.knowledge_base_id else None
    child, workflow_input_ = continue_task(
        session,
        store,
        settings,
        parent,
        name=body.task_name or f"{parent.name} (feedback round: dataset {body.dataset_id} v{corrections.version})",
        knowledge_base_version=kb.version if kb is not None else None,
        corrections=corrections,
        created_by=created_by,
    )
    try:
        client = await temporal()
        await client.start_workflow(
            FineTuningWorkflow.run,
            workflow_input_,
            id=child.id,
            task_queue=TASK_QUEUE_WORKFLOWS,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except (RPCError, Unavailable) as exc:  # nothing started: the round can be asked for again
        session.delete(child)
        session.commit()
        raise Unavailable(f"could not start the feedback round's workflow: {exc}") from exc
    return child
