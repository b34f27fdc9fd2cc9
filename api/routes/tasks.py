from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import Offset, SessionDep, SettingsDep, StoreDep, TemporalDep
from api.security import TasksRead, TasksWrite
from core.status import TaskMode, TaskStatus
from db.models import MLTask
from schemas.api import ContinuousTaskCreate, ExecutionPublic, StandardTaskCreate, TaskAction, TaskList, TaskPublic, TrainingProgressPublic
from schemas.reports import StoredTaskReport
from services import tasks as service

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


def to_public(task: MLTask, settings=None, progress: dict[str, Any] | None = None) -> TaskPublic:
    fields = {k: getattr(task, k) for k in TaskPublic.model_fields if hasattr(task, k) and k not in ("progress",)}
    url = f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{task.id}" if settings else None
    live = TrainingProgressPublic(**{k: progress.get(k) for k in TrainingProgressPublic.model_fields}) if progress else None
    return TaskPublic(task_id=task.id, task_name=task.name, progress=live, workflow_url=url, **fields)


@router.post("/standard", status_code=201, response_model=TaskPublic)
def create_standard_task(caller: TasksWrite, session: SessionDep, settings: SettingsDep, body: StandardTaskCreate, response: Response) -> TaskPublic:
    return _created(service.create_task(session, body, TaskMode.STANDARD, caller.org_id, caller.user_id), settings, response)


@router.post("/continuous", status_code=201, response_model=TaskPublic)
def create_continuous_task(caller: TasksWrite, session: SessionDep, settings: SettingsDep, body: ContinuousTaskCreate, response: Response) -> TaskPublic:
    return _created(service.create_task(session, body, TaskMode.CONTINUOUS, caller.org_id, caller.user_id), settings, response)


def _created(task: MLTask, settings, response: Response) -> TaskPublic:
    response.headers["Location"] = f"{router.prefix}/{task.id}"
    return to_public(task, settings)


@router.get("", response_model=TaskList)
def list_tasks(caller: TasksRead, session: SessionDep, settings: SettingsDep, status: TaskStatus | None = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Offset = 0) -> TaskList:
    rows, total = service.list_tasks(session, caller.org_id, status, limit, offset)
    return TaskList(items=[to_public(t, settings) for t in rows], total=total, limit=limit, offset=offset)


@router.get("/{task_id}", response_model=TaskPublic)
async def get_task(caller: TasksRead, session: SessionDep, settings: SettingsDep, temporal: TemporalDep, task_id: str) -> TaskPublic:
    task = service.get_task(session, caller.org_id, task_id)
    return to_public(task, settings, await service.live_progress(temporal, task))


@router.get("/{task_id}/executions", response_model=list[ExecutionPublic])
def list_executions(caller: TasksRead, session: SessionDep, task_id: str) -> list[ExecutionPublic]:
    return [ExecutionPublic.model_validate(e, from_attributes=True) for e in service.list_executions(session, caller.org_id, task_id)]


@router.get("/{task_id}/report", response_model=StoredTaskReport)
def get_report(caller: TasksRead, session: SessionDep, store: StoreDep, task_id: str) -> StoredTaskReport:
    """Every iteration against the base model on the locked test split, from each bad case to its score change."""
    return service.task_report(session, store, caller.org_id, task_id)


@router.post("/{task_id}/start", status_code=202, response_model=TaskAction)
async def start_task(caller: TasksWrite, session: SessionDep, settings: SettingsDep, temporal: TemporalDep, task_id: str) -> TaskAction:
    task = await service.start_task(session, temporal, settings, task_id, org_id=caller.org_id)
    return TaskAction(task_id=task_id, status=task.status, detail="workflow started (or already running)")


@router.post("/{task_id}/pause", status_code=202, response_model=TaskAction)
async def pause_task(caller: TasksWrite, session: SessionDep, temporal: TemporalDep, task_id: str) -> TaskAction:
    task = await service.pause_task(session, temporal, task_id, org_id=caller.org_id)
    return TaskAction(task_id=task_id, status=task.status, detail="pause requested: the running phase checkpoints and stops")


@router.post("/{task_id}/resume", status_code=202, response_model=TaskAction)
async def resume_task(caller: TasksWrite, session: SessionDep, temporal: TemporalDep, task_id: str) -> TaskAction:
    task = await service.resume_task(session, temporal, task_id, org_id=caller.org_id)
    return TaskAction(task_id=task_id, status=task.status, detail=f"resume requested: back to {task.suspended_from}")


@router.post("/{task_id}/cancel", status_code=202, response_model=TaskAction)
async def cancel_task(caller: TasksWrite, session: SessionDep, temporal: TemporalDep, task_id: str) -> TaskAction:
    task = await service.cancel_task(session, temporal, task_id, org_id=caller.org_id)
    return TaskAction(task_id=task_id, status=task.status, detail="cancellation requested: the unfinished iteration is compensated")
