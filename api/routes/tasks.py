from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.deps import Offset, SessionDep, SettingsDep, StoreDep, TemporalDep
from api.errors import JSON_ERROR_RESPONSES
from api.security import TasksRead, TasksWrite
from core.status import TERMINAL_STATUSES, TaskMode, TaskStatus
from db.models import MLTask, TaskEvent
from schemas.api import (
    ContinuousTaskCreate,
    ExecutionPublic,
    FeedbackRoundCreate,
    StandardTaskCreate,
    TaskAction,
    TaskList,
    TaskPublic,
    TrainingProgressPublic,
)
from schemas.reports import AnswerList, StoredTaskReport
from services import incremental, task_events
from services import tasks as service

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


def to_public(task: MLTask, settings=None, progress: dict[str, Any] | None = None) -> TaskPublic:
    fields = {k: getattr(task, k) for k in TaskPublic.model_fields if hasattr(task, k) and k not in ("progress",)}
    url = (
        f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{task.id}" if settings else None
    )
    live = (
        TrainingProgressPublic(**{k: progress.get(k) for k in TrainingProgressPublic.model_fields})
        if progress
        else None
    )
    return TaskPublic(task_id=task.id, task_name=task.name, progress=live, workflow_url=url, **fields)


@router.post("/standard", status_code=201, response_model=TaskPublic)
def create_standard_task(
    caller: TasksWrite, session: SessionDep, settings: SettingsDep, body: StandardTaskCreate, response: Response
) -> TaskPublic:
    return _created(
        service.create_task(session, body, TaskMode.STANDARD, caller.org_id, caller.user_id), settings, response
    )


@router.post("/continuous", status_code=201, response_model=TaskPublic)
def create_continuous_task(
    caller: TasksWrite, session: SessionDep, settings: SettingsDep, body: ContinuousTaskCreate, response: Response
) -> TaskPublic:
    return _created(
        service.create_task(session, body, TaskMode.CONTINUOUS, caller.org_id, caller.user_id), settings, response
    )


def _created(task: MLTask, settings, response: Response) -> TaskPublic:
    response.headers["Location"] = f"{router.prefix}/{task.id}"
    return to_public(task, settings)


@router.get("", response_model=TaskList)
def list_tasks(
    caller: TasksRead,
    session: SessionDep,
    settings: SettingsDep,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> TaskList:
    rows, total = service.list_tasks(session, caller.org_id, status, limit, offset)
    return TaskList(items=[to_public(t, settings) for t in rows], total=total, limit=limit, offset=offset)


@router.get("/{task_id}", response_model=TaskPublic)
def get_task(caller: TasksRead, session: SessionDep, settings: SettingsDep, task_id: str) -> TaskPublic:
    task = service.get_task(session, caller.org_id, task_id)
    return to_public(task, settings, task_events.latest_progress(session, task))


@router.get("/{task_id}/executions", response_model=list[ExecutionPublic])
def list_executions(caller: TasksRead, session: SessionDep, task_id: str) -> list[ExecutionPublic]:
    return [
        ExecutionPublic.model_validate(e, from_attributes=True)
        for e in service.list_executions(session, caller.org_id, task_id)
    ]


@router.get("/{task_id}/report", response_model=StoredTaskReport)
def get_report(caller: TasksRead, session: SessionDep, store: StoreDep, task_id: str) -> StoredTaskReport:
    """Every iteration against the base model on the locked test split, from each bad case to its score change."""
    return service.task_report(session, store, caller.org_id, task_id)


@router.get("/{task_id}/iterations/{iteration}/answers", response_model=AnswerList)
def list_answers(
    caller: TasksRead,
    session: SessionDep,
    store: StoreDep,
    task_id: str,
    iteration: Annotated[int, Path(ge=0, le=1000)],
    split: Literal["test", "feedback"] = "test",
    mode: Literal["closed_book", "rag"] | None = None,
    verdict: Annotated[
        Literal["right", "wrong", "unjudged", "misread", "not_retrieved"] | None,
        Query(
            description="`misread`: wrong, with passages that state the answer; `not_retrieved`: wrong, with passages "
            "that do not (rag only)"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    offset: Offset = 0,
) -> AnswerList:
    """Every answer of one evaluation (iteration 0: the base model) with its question, reference, sources and each fact
    check's verdict, wrong ones first; `mode` defaults to the task's serving mode."""
    return service.evaluation_answers(
        session, store, caller.org_id, task_id, iteration, split, mode, verdict, limit, offset
    )


@router.post("/{task_id}/start", status_code=202, response_model=TaskAction)
async def start_task(
    caller: TasksWrite, session: SessionDep, settings: SettingsDep, temporal: TemporalDep, task_id: str
) -> TaskAction:
    task = await service.start_task(session, temporal, settings, task_id, org_id=caller.org_id)
    return TaskAction(task_id=task_id, status=task.status, detail="workflow started (or already running)")


@router.post("/{task_id}/feedback-rounds", status_code=201, response_model=TaskPublic)
async def start_feedback_round(
    caller: TasksWrite,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    temporal: TemporalDep,
    task_id: str,
    body: FeedbackRoundCreate,
    response: Response,
) -> TaskPublic:
    """Continue the COMPLETED task with a dataset of corrected answers: an incremental task, started, that trains from
    the task's final adapter on its training split and on every correction, on the task's locked splits. Its final
    adapter joins the task's registered model and goes before the gate of each alias serving the task's version."""
    child = await incremental.start_feedback_round(
        session, temporal, store, settings, task_id, body, org_id=caller.org_id, created_by=caller.user_id
    )
    return _created(child, settings, response)


@router.post("/{task_id}/pause", status_code=202, response_model=TaskAction)
async def pause_task(caller: TasksWrite, session: SessionDep, temporal: TemporalDep, task_id: str) -> TaskAction:
    task = await service.pause_task(session, temporal, task_id, org_id=caller.org_id)
    return TaskAction(
        task_id=task_id, status=task.status, detail="pause requested: the running phase checkpoints and stops"
    )


@router.post("/{task_id}/resume", status_code=202, response_model=TaskAction)
async def resume_task(caller: TasksWrite, session: SessionDep, temporal: TemporalDep, task_id: str) -> TaskAction:
    task = await service.resume_task(session, temporal, task_id, org_id=caller.org_id)
    return TaskAction(task_id=task_id, status=task.status, detail=f"resume requested: back to {task.suspended_from}")


@router.post("/{task_id}/cancel", status_code=202, response_model=TaskAction)
async def cancel_task(caller: TasksWrite, session: SessionDep, temporal: TemporalDep, task_id: str) -> TaskAction:
    task = await service.cancel_task(session, temporal, task_id, org_id=caller.org_id)
    return TaskAction(
        task_id=task_id, status=task.status, detail="cancellation requested: the unfinished iteration is compensated"
    )


def task_to_follow(caller: TasksRead, session: SessionDep, task_id: str) -> tuple[str, str]:
    """(organization, task id) of a task the caller may read: unknown ids are 404 before the stream starts. The
    request's session is closed here, so a stream that lasts hours holds no database connection."""
    service.get_task(session, caller.org_id, task_id)
    session.close()
    return caller.org_id, task_id


@router.get(
    "/{task_id}/events",
    response_class=EventSourceResponse,
    responses={
        **JSON_ERROR_RESPONSES,
        200: {
            "description": (
                "Server-sent events: `snapshot` (first, without Last-Event-ID: the task as GET /tasks/{id} shows it), "
                "`status`, `progress` (training step, loss, tokens/s; evaluation done/total), `score` (an iteration's "
                "test score) and `final` (the terminal status; the stream ends). Each has an increasing `id`; "
                "reconnect with `Last-Event-ID` to resume."
            )
        },
    },
)
async def follow_task(
    request: Request,
    settings: SettingsDep,
    followed: Annotated[tuple[str, str], Depends(task_to_follow)],
    last_event_id: Annotated[int | None, Header(ge=0, le=2**63 - 1)] = None,
) -> AsyncIterator[ServerSentEvent]:
    """The task's live progress, from its current state (or after `Last-Event-ID`) to its end."""
    org_id, task_id = followed
    sessions = request.app.state.sessions

    def snapshot() -> tuple[int, TaskPublic]:
        with sessions() as session:
            task = service.get_task(session, org_id, task_id)
            return task_events.latest_event_id(session, task_id), to_public(
                task, settings, task_events.latest_progress(session, task)
            )

    def read(after: int) -> tuple[str, dict[str, Any], list[TaskEvent]]:
        with sessions() as session:
            task, events = task_events.poll(session, org_id, task_id, after)
            return task.status, task_events.final_data(task), events

    if last_event_id is None:  # a new follower: the state now, then only what comes after it
        after, task = await run_in_threadpool(snapshot)
        yield ServerSentEvent(event="snapshot", id=str(after), data={"task": task.model_dump(mode="json")})
    else:
        after = last_event_id
    while True:
        status, final, events = await run_in_threadpool(read, after)
        for event in events:
            yield ServerSentEvent(event=event.kind, id=str(event.id), data=event.data)
            after = event.id
            if event.kind == task_events.FINAL:
                return
        if len(events) == task_events.PAGE:
            continue
        # it ended before it had events, or the follower has seen its end already
        if TaskStatus(status) in TERMINAL_STATUSES:
            yield ServerSentEvent(event=task_events.FINAL, id=str(after), data=final)
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(settings.event_poll_seconds)
