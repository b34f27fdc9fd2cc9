"""Tasks: create rows, start/pause/resume/cancel workflows.

Every lookup is inside one organization (`org_id`): another tenant's task is simply not found.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from core.clock import utcnow
from core.errors import Conflict, Invalid, NotFound, RateLimited, Unavailable
from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from core.status import TERMINAL_STATUSES, TaskMode, TaskStatus, can_transition
from db.models import KnowledgeBase, MLTask, Organization, TaskExecution, new_id
from ml.base_model import UnknownModel, validate_model_name
from schemas.api import ContinuousTaskCreate, StandardTaskCreate
from schemas.reports import AnswerList, EvaluationReport, ExampleScore, StoredTaskReport, TaskReport
from schemas.workflow_io import ActivityTimeouts, FineTuningInput, FineTuningResult, Hyperparameters
from services import task_events
from services.datasets import ready_dataset
from services.tenancy import get_owned, list_owned
from storage.keys import evaluation_prefix
from storage.object_store import ObjectNotFound, ObjectStore, get_bytes
from temporal_client.workflows import FineTuningWorkflow

CONTROL_TIMEOUT = timedelta(seconds=15)  # how long a pause/resume/cancel waits for a workflow worker to decide
Temporal = Callable[[], Awaitable[Client]]  # connects on first use (temporal_client.TemporalConnection)


def create_task(
    session: Session, body: StandardTaskCreate, mode: TaskMode, org_id: str, created_by: str | None
) -> MLTask:
    dataset = ready_dataset(session, org_id, body.dataset_id)
    if body.retrain_on_change and body.knowledge_base_id is None:
        raise Invalid(
            "retrain_on_change: a task follows a knowledge base's changes only if it has one (knowledge_base_id)"
        )
    if body.context_statements is not None and body.knowledge_base_id is None:
        raise Invalid("context_statements: only a task with a knowledge base (knowledge_base_id) has passages to cut")
    kb = None
    if body.knowledge_base_id is not None:
        kb = get_owned(session, KnowledgeBase, org_id, body.knowledge_base_id, "knowledge base")
        if not kb.index_key:
            raise Conflict(
                f"knowledge base {kb.id} has no index yet (it is {kb.status}): "
                "upload documents and wait until it is READY"
            )
    try:
        validate_model_name(body.model_name)
    except UnknownModel as exc:
        raise Invalid(f"model_name: {exc}") from exc
    continuous = body if isinstance(body, ContinuousTaskCreate) else None
    task = MLTask(
        id=new_id(),
        name=body.task_name,
        mode=mode.value,
        status=TaskStatus.PENDING.value,
        model_name=body.model_name,
        dataset_id=body.dataset_id,
        # it trains on the dataset as it is now: later versions are for later tasks
        dataset_version=dataset.version,
        org_id=org_id,
        created_by=created_by,
        current_iteration=0,
        max_iterations=continuous.max_iterations if continuous else 1,
        performance_threshold=continuous.performance_threshold if continuous else None,
        hyperparameters=body.hyperparameters.model_dump(exclude_none=True),
        knowledge_base_id=body.knowledge_base_id,
        # it grounds on this version or a newer one: a change notice for this version is not news to it
        knowledge_base_version=kb.version if kb is not None else None,
        retrieval_top_k=body.retrieval_top_k,
        context_statements=body.context_statements,
        retrain_on_change=body.retrain_on_change,
        register_as=body.register_as,
    )
    session.add(task)
    session.commit()
    return task


def get_task(session: Session, org_id: str, task_id: str) -> MLTask:
    return get_owned(session, MLTask, org_id, task_id, "task")


def list_tasks(
    session: Session, org_id: str, status: TaskStatus | None, limit: int, offset: int
) -> tuple[list[MLTask], int]:
    return list_owned(
        session, MLTask, org_id, limit, offset, *([MLTask.status == status.value] if status is not None else [])
    )


def list_executions(session: Session, org_id: str, task_id: str) -> list[TaskExecution]:
    get_task(session, org_id, task_id)
    return list(
        session.scalars(select(TaskExecution).where(TaskExecution.task_id == task_id).order_by(TaskExecution.id))
    )


def task_report(session: Session, store: ObjectStore, org_id: str, task_id: str) -> StoredTaskReport:
    """The finished task's report, with where its JSON and Markdown are stored."""
    task = get_task(session, org_id, task_id)
    if not task.report_key:
        raise NotFound(f"task {task_id} has no report yet (status {task.status})")
    try:
        report = get_bytes(store, task.report_key)
    except ObjectNotFound as exc:
        raise NotFound(f"the report of task {task_id} is missing from storage") from exc
    return StoredTaskReport(
        **TaskReport.model_validate_json(report).model_dump(),
        report_path=store.describe(task.report_key),
        markdown_path=store.describe(task.report_key.replace(".json", ".md")),
    )


def evaluation_answers(
    session: Session,
    store: ObjectStore,
    org_id: str,
    task_id: str,
    iteration: int,
    split: str,
    mode: str | None,
    verdict: str | None,
    limit: int,
    offset: int,
) -> AnswerList:
    """One evaluation's answers (iteration 0: the base model), each with its verdict by its fact checks, wrong ones
    first, filtered by verdict (`right`, `wrong`, `unjudged`; `misread` and `not_retrieved`: the wrong answers whose
    passages did and did not state their answer) and paged."""
    task = get_task(session, org_id, task_id)
    if iteration == 0:
        key = evaluation_prefix(task.id) + "baseline.json"
    else:
        key = session.scalar(
            select(TaskExecution.evaluation_key)
            .where(
                TaskExecution.task_id == task.id,
                TaskExecution.iteration == iteration,
                TaskExecution.phase == TaskStatus.EVALUATING.value,
                TaskExecution.evaluation_key.is_not(None),
            )
            .order_by(TaskExecution.id.desc())
            .limit(1)
        )
        if key is None:
            raise NotFound(f"task {task_id} has no evaluation of iteration {iteration} (status {task.status})")
    try:
        report = EvaluationReport.model_validate_json(get_bytes(store, key))
    except ObjectNotFound as exc:
        raise NotFound(f"task {task_id} has no evaluation of iteration {iteration} yet") from exc
    mode = mode or report.headline.mode
    if mode not in report.modes:
        raise Invalid(
            f"mode: iteration {iteration} of task {task_id} was evaluated in {', '.join(sorted(report.modes))}, "
            f"not {mode}",
            param="mode",
        )
    result = report.modes[mode][split]
    rows = [r for r in result.examples if verdict is None or VERDICTS[verdict](r)]
    rows.sort(key=lambda r: (r.right is not False, r.right is None))  # wrong first, then right, then unjudged; stable
    return AnswerList(
        task_id=task.id,
        iteration=iteration,
        split=split,
        mode=mode,
        scores=result.scores,
        items=rows[offset : offset + limit],
        total=len(rows),
        limit=limit,
        offset=offset,
    )


VERDICTS: dict[str, Callable[[ExampleScore], bool]] = {
    "right": lambda r: r.right is True,
    "wrong": lambda r: r.right is False,
    "unjudged": lambda r: r.right is None,
    "misread": lambda r: r.right is False and r.answer_in_passages is True,
    "not_retrieved": lambda r: r.right is False and r.answer_in_passages is False,
}


def workflow_input(task: MLTask, settings: Settings, targeting: bool = True) -> FineTuningInput:
    hyperparameters = dict(task.hyperparameters or {})
    if task.knowledge_base_id:  # prompts carry passages: room for them unless the task says otherwise
        hyperparameters.setdefault("max_seq_length", settings.rag_max_seq_length)
    return FineTuningInput(
        task_id=task.id,
        org_id=task.org_id,
        mode=task.mode,
        model_name=task.model_name,
        dataset_id=task.dataset_id,
        dataset_version=task.dataset_version,
        hyperparameters=Hyperparameters(**hyperparameters),
        max_iterations=task.max_iterations,
        performance_threshold=task.performance_threshold,
        targeting=targeting,
        timeouts=ActivityTimeouts(
            heartbeat_seconds=settings.heartbeat_timeout_seconds, max_attempts=settings.activity_max_attempts
        ),
        knowledge_base_id=task.knowledge_base_id,
        retrieval_top_k=task.retrieval_top_k,
        context_statements=task.context_statements,
        oracle_fraction=settings.raft_oracle_fraction,
        corrections_dataset_id=task.corrections_dataset_id,
        corrections_dataset_version=task.corrections_dataset_version,
    )


def trained_on(dataset_id: str, versions: Collection[int]) -> ColumnElement[bool]:
    """Which tasks train on one of these versions of the dataset: those that pinned it, and for version 1 those made
    before versions, which pinned none and read the dataset's first file."""
    pinned: ColumnElement[bool] = MLTask.dataset_version.in_(versions)
    if 1 in versions:
        pinned = or_(pinned, MLTask.dataset_version.is_(None))
    return and_(MLTask.dataset_id == dataset_id, pinned)


def count_by_status(session: Session) -> dict[str, int]:
    """How many tasks are in each status, across every organization (for the operators' metrics)."""
    return dict(session.execute(select(MLTask.status, func.count()).group_by(MLTask.status)).all())


def running_tasks(session: Session, org_id: str) -> int:
    """Tasks started and not finished (suspended ones hold checkpoints and a place in the loop, so they count)."""
    return session.execute(
        select(func.count())
        .select_from(MLTask)
        .where(
            MLTask.org_id == org_id,
            MLTask.started_at.is_not(None),
            MLTask.status.not_in([s.value for s in TERMINAL_STATUSES]),
        )
    ).scalar_one()


def claim_running_slot(session: Session, settings: Settings, task: MLTask) -> bool:
    """Count this task as running, unless the organization is at its limit (429). The organization row is
    locked (PostgreSQL) so two concurrent starts cannot both take the last slot."""
    if task.started_at is not None:
        return False
    session.scalar(select(Organization).where(Organization.id == task.org_id).with_for_update())
    running = running_tasks(session, task.org_id)
    if running >= settings.max_running_tasks_per_org:
        session.rollback()
        raise RateLimited(
            f"the organization already runs {running} tasks, its limit is {settings.max_running_tasks_per_org}; "
            "wait for one to finish or cancel one"
        )
    task.started_at = utcnow()
    session.commit()
    return True


async def start_task(session: Session, temporal: Temporal, settings: Settings, task_id: str, *, org_id: str) -> MLTask:
    """Start the task's workflow (id = task id); starting again is a no-op, never a second run."""
    task = get_task(session, org_id, task_id)
    if TaskStatus(task.status) in TERMINAL_STATUSES:
        raise Conflict(f"task {task_id} is already {task.status}")
    client = await temporal()
    claimed = claim_running_slot(session, settings, task)
    try:
        await client.start_workflow(
            FineTuningWorkflow.run,
            workflow_input(task, settings),
            id=task.id,
            task_queue=TASK_QUEUE_WORKFLOWS,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            if claimed:  # nothing started: give the slot back
                task.started_at = None
                session.commit()
            raise Unavailable(f"could not start the workflow: {exc.message}") from exc
    return task


def _require(task: MLTask, target: TaskStatus, action: str) -> None:
    """Refuse early what the projection already shows to be impossible (a task never started or already finished);
    the workflow's own update validator decides everything else."""
    current = TaskStatus(task.status)
    suspended_from = TaskStatus(task.suspended_from) if task.suspended_from else None
    allowed = (
        can_transition(current, target, suspended_from=suspended_from)
        if target != TaskStatus.OPTIMIZING
        else current == TaskStatus.SUSPENDED
    )
    if not allowed:
        raise Conflict(f"cannot {action} task {task.id}: it is {current}")


class NoRunningWorkflow(Conflict):
    """The task has no running workflow: never started, or already closed."""


async def pause_task(session: Session, temporal: Temporal, task_id: str, *, org_id: str) -> MLTask:
    task = get_task(session, org_id, task_id)
    _require(task, TaskStatus.SUSPENDED, "pause")
    await _command(await _handle(temporal, task_id), FineTuningWorkflow.request_pause)
    return task


async def resume_task(session: Session, temporal: Temporal, task_id: str, *, org_id: str) -> MLTask:
    task = get_task(session, org_id, task_id)
    if TaskStatus(task.status) != TaskStatus.SUSPENDED:
        raise Conflict(f"cannot resume task {task_id}: it is {task.status}, not SUSPENDED")
    await _command(await _handle(temporal, task_id), FineTuningWorkflow.request_resume)
    return task


async def cancel_task(session: Session, temporal: Temporal, task_id: str, *, org_id: str) -> MLTask:
    """The workflow accepts the cancellation (or refuses it), then Temporal cancels it and it compensates; a task
    never started is cancelled in the database directly."""
    task = get_task(session, org_id, task_id)
    _require(task, TaskStatus.CANCELLED, "cancel")
    handle = await _handle(temporal, task_id)
    try:
        await _command(handle, FineTuningWorkflow.request_cancel)
    except NoRunningWorkflow:
        if task.started_at is not None:  # it ran and has just finished: nothing left to cancel
            raise
        previous, task.status = task.status, TaskStatus.CANCELLED.value
        task_events.record_status_change(session, task, previous)
        session.commit()
        return task
    try:
        await handle.cancel()
    except RPCError as exc:
        raise Unavailable(f"could not cancel the workflow: {exc.message}") from exc
    return task


TaskHandle = WorkflowHandle[FineTuningWorkflow, FineTuningResult]


async def _handle(temporal: Temporal, task_id: str) -> TaskHandle:
    """The task's workflow (its id is the task's id; the handle follows it across continue-as-new)."""
    return (await temporal()).get_workflow_handle_for(FineTuningWorkflow.run, task_id)


async def _command(handle: TaskHandle, update: UpdateMethodMultiParam[[FineTuningWorkflow], str]) -> str:
    """Send a control update; the workflow's validator accepts it or says why not (409)."""
    try:
        return await handle.execute_update(update, rpc_timeout=CONTROL_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        raise Conflict(getattr(exc.cause, "message", None) or str(exc)) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in exc.message:
            raise NoRunningWorkflow(f"task {handle.id} has no running workflow") from exc
        raise Unavailable(f"the workflow did not answer (are the control workers running?): {exc.message}") from exc
