"""Incremental re-training: tell the tasks that follow a knowledge base that it changed, read a task's state, and start
an incremental task from a finished one. Async activities: they use the worker's own Temporal client; their database
work runs in a thread."""

from __future__ import annotations

import asyncio

from sqlalchemy import or_, select
from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy

from activities.context import ActivityContext, invalid_input
from core.settings import TASK_QUEUE_WORKFLOWS
from core.status import TaskStatus
from db.models import MLTask
from schemas.workflow_io import (
    FineTuningInput,
    KnowledgeChanged,
    NotifyFollowersInput,
    RetrainInput,
    StartIncrementalInput,
    TaskStateInput,
    TaskStateResult,
)
from services import incremental
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

    def _create_child(self, inp: StartIncrementalInput) -> tuple[str, FineTuningInput]:
        with self.ctx.sessions() as session:
            parent = session.get(MLTask, inp.parent_task_id)
            if parent is None:
                raise invalid_input(f"task {inp.parent_task_id} no longer exists")
            child, workflow_input_ = incremental.continue_task(
                session,
                self.ctx.store,
                self.ctx.settings,
                parent,
                name=f"{parent.name} (knowledge base v{inp.knowledge_base_version})",
                knowledge_base_version=inp.knowledge_base_version,
            )
            activity.logger.info("task %s continues task %s on its splits", child.id, parent.id)
            return child.id, workflow_input_
