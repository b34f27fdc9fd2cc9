"""Incremental re-training: tell the tasks that follow a knowledge base that it changed, read a task's state, and start
an incremental task from a finished one. Async activities: they use the worker's own Temporal client; their database
work runs in a thread."""

from __future__ import annotations

import asyncio
import dataclasses

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy

from activities.context import ActivityContext, invalid_input
from core.errors import DomainError
from core.settings import TASK_QUEUE_WORKFLOWS
from core.status import TaskStatus
from db.models import Dataset, DatasetVersion, MLTask, new_id
from ml.optimizer import Splits, follow_dataset
from schemas.workflow_io import (
    FineTuningInput,
    KnowledgeChanged,
    LoopState,
    NotifyFollowersInput,
    RetrainInput,
    StartIncrementalInput,
    TaskStateInput,
    TaskStateResult,
)
from services import dataset_versions as versions
from services.registry import default_model_name
from services.tasks import claim_running_slot, workflow_input
from storage import keys
from storage.object_store import ObjectNotFound
from temporal_client.workflows import FineTuningWorkflow, RetrainWorkflow, retrain_workflow_id, signal_name


class RetrainingActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="notify_followers")
    async def notify_followers(self, inp: NotifyFollowersInput) -> list[str]:
        """Signal (with start) the retraining workflow of every task that follows the knowledge base, has no incremental
        task yet (the newest of each lineage) and has not failed or been cancelled; returns their ids."""
        followers = await asyncio.to_thread(self._followers, inp.knowledge_base_id, inp.version)
        client = activity.client()
        for task_id in followers:
            await client.start_workflow(
                RetrainWorkflow.run,
                RetrainInput(
                    task_id=task_id,
                    org_id=inp.org_id,
                    knowledge_base_id=inp.knowledge_base_id,
                    quiet_seconds=self.ctx.settings.retrain_quiet_seconds,
                    poll_seconds=self.ctx.settings.retrain_poll_seconds,
                ),
                id=retrain_workflow_id(task_id),
                task_queue=TASK_QUEUE_WORKFLOWS,
                start_signal=signal_name(RetrainWorkflow.knowledge_changed),
                start_signal_args=[KnowledgeChanged(version=inp.version)],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        return followers

    def _followers(self, knowledge_base_id: str, version: int) -> list[str]:
        with self.ctx.sessions() as session:
            children = select(MLTask.parent_task_id).where(MLTask.parent_task_id.is_not(None))
            ended_badly = [TaskStatus.FAILED.value, TaskStatus.CANCELLED.value]  # nothing to continue from
            return list(
                session.scalars(
                    select(MLTask.id)
                    .where(
                        MLTask.knowledge_base_id == knowledge_base_id,
                        MLTask.retrain_on_change,
                        MLTask.id.not_in(children),
                        MLTask.status.not_in(ended_badly),
                        # a task that already grounded on this version (or a newer one) has nothing new to learn
                        or_(MLTask.knowledge_base_version.is_(None), MLTask.knowledge_base_version < version),
                    )
                    .order_by(MLTask.created_at)
                )
            )

    @activity.defn(name="task_state")
    async def task_state(self, inp: TaskStateInput) -> TaskStateResult:
        return await asyncio.to_thread(self._state, inp.task_id)

    def _state(self, task_id: str) -> TaskStateResult:
        with self.ctx.sessions() as session:
            task = session.get(MLTask, task_id)
            if task is None:
                return TaskStateResult(status="DELETED", child_task_id=None)
            child = session.scalar(select(MLTask.id).where(MLTask.parent_task_id == task_id))
            return TaskStateResult(
                status=task.status, child_task_id=child, knowledge_base_version=task.knowledge_base_version
            )

    @activity.defn(name="start_incremental_task")
    async def start_incremental_task(self, inp: StartIncrementalInput) -> str:
        """A task that continues the finished parent: its final adapter, its splits (brought to its dataset's head
        version, so rows marked stale are left out), the knowledge base as it is now.
        At most one per parent: a retried attempt finds the child it created. Counts against the organization's running
        tasks; at the limit the attempt fails as RateLimited and is retried until a slot frees."""
        child, workflow_input_ = await asyncio.to_thread(self._create_child, inp)
        await activity.client().start_workflow(
            FineTuningWorkflow.run,
            workflow_input_,
            id=child,
            task_queue=TASK_QUEUE_WORKFLOWS,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        return child

    def _head(self, session: Session, parent: MLTask, version: int | None) -> DatasetVersion | None:
        """A version (by default the head) of the parent's dataset; None when the dataset is gone or takes no
        versions."""
        dataset = session.get(Dataset, parent.dataset_id)
        if dataset is None or dataset.is_optimized:
            return None
        try:
            return versions.get_version(session, self.ctx.store, parent.org_id, dataset.id, version or dataset.version)
        except (DomainError, ObjectNotFound):  # a dataset whose file is gone has no version to follow
            return None

    def _create_child(self, inp: StartIncrementalInput) -> tuple[str, FineTuningInput]:
        with self.ctx.sessions() as session:
            parent = session.get(MLTask, inp.parent_task_id)
            if parent is None:
                raise invalid_input(f"task {inp.parent_task_id} no longer exists")
            child = session.scalar(select(MLTask).where(MLTask.parent_task_id == parent.id))
            if child is None:
                head = self._head(session, parent, None)
                child = MLTask(
                    id=f"{parent.id[:20]}-inc-{new_id()[:8]}",
                    name=f"{parent.name} (knowledge base v{inp.knowledge_base_version})",
                    mode=parent.mode,
                    status=TaskStatus.PENDING.value,
                    model_name=parent.model_name,
                    dataset_id=parent.dataset_id,
                    # the dataset's head: rows marked stale (or otherwise excluded or corrected) since the parent
                    # was created count
                    dataset_version=head.version if head else parent.dataset_version,
                    org_id=parent.org_id,
                    created_by=parent.created_by,
                    current_iteration=0,
                    max_iterations=parent.max_iterations,
                    performance_threshold=parent.performance_threshold,
                    hyperparameters=dict(parent.hyperparameters or {}),
                    knowledge_base_id=parent.knowledge_base_id,
                    retrieval_top_k=parent.retrieval_top_k,
                    context_statements=parent.context_statements,
                    retrain_on_change=True,
                    parent_task_id=parent.id,
                    register_as=parent.register_as or default_model_name(parent.name),
                    # what it will ground on (its optimization records a newer version if one comes first)
                    knowledge_base_version=inp.knowledge_base_version,
                )
                session.add(child)
                claim_running_slot(session, self.ctx.settings, child)  # commits, or rolls back and raises RateLimited
            else:  # a retried attempt: the version the child pinned
                head = self._head(session, parent, child.dataset_version)
            # the lineage keeps its splits: the child gets its own copy, so it is scored on the very test split its
            # parent was, less the rows its dataset's head now excludes and with the answers it corrected
            splits = self.ctx.read_json(keys.first_splits_key(parent.id))
            if head is not None and head.version != parent.dataset_version:
                rows = versions.version_rows(self.ctx.store, head)
                followed = follow_dataset(Splits.from_json(splits), [row.record for row in rows])
                splits = followed.splits.to_json()
                activity.logger.info(
                    "task %s follows dataset %s from version %s to %s: %s examples left out, %s corrected",
                    child.id,
                    parent.dataset_id,
                    parent.dataset_version,
                    head.version,
                    followed.dropped,
                    followed.corrected,
                )
            splits_key = self.ctx.write_json(keys.first_splits_key(child.id), splits)
            inp_ = workflow_input(child, self.ctx.settings)
            return child.id, dataclasses.replace(
                inp_,
                parent_task_id=parent.id,
                init_adapter_key=parent.latest_adapter_key,
                parent_evaluation_key=parent.latest_evaluation_key,
                state=LoopState(splits_key=splits_key),
            )
