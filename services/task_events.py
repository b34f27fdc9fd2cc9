"""A task's events, in order: status changes, phase progress, iteration scores and the end. The database projection
and the running activities write them; the API's event stream replays them after a client's last event id.

Progress is throttled where it is produced (`ProgressRecorder`), so a task writes a row every few seconds at most.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import utcnow
from core.status import ACTIVE_PHASES, TERMINAL_STATUSES, TaskStatus
from db.models import MLTask, TaskEvent
from services.tenancy import get_owned

STATUS, PROGRESS, SCORE, FINAL = "status", "progress", "score", "final"
PAGE = 500  # events read at once by a follower


def record(session: Session, task_id: str, kind: str, **data: Any) -> TaskEvent:
    """Add one event to the session (the caller commits it with the change it describes)."""
    event = TaskEvent(task_id=task_id, kind=kind, data={**data, "at": utcnow().isoformat()})
    session.add(event)
    return event


def record_status_change(session: Session, task: MLTask, previous: str) -> None:
    """The task moved from `previous` to its current status: say so, and end the stream if it is terminal."""
    if task.status == previous:
        return
    record(session, task.id, STATUS, status=task.status, previous_status=previous, iteration=task.current_iteration)
    if TaskStatus(task.status) in TERMINAL_STATUSES:
        record(session, task.id, FINAL, **final_data(task))


def final_data(task: MLTask) -> dict[str, Any]:
    return {
        "status": task.status,
        "error": task.error,
        "latest_score": task.latest_score,
        "baseline_score": task.baseline_score,
        "report_available": task.report_key is not None,
    }


def latest_event_id(session: Session, task_id: str) -> int:
    return session.scalar(select(func.max(TaskEvent.id)).where(TaskEvent.task_id == task_id)) or 0


def latest_progress(session: Session, task: MLTask) -> dict[str, Any] | None:
    """The running phase's last progress (training step, loss and tokens/s; evaluation stage), or None when the task is
    not in a phase: what `GET /tasks/{id}` and the event stream's snapshot show."""
    if TaskStatus(task.status) not in ACTIVE_PHASES:
        return None
    event = session.scalars(
        select(TaskEvent).where(TaskEvent.task_id == task.id, TaskEvent.kind == PROGRESS).order_by(TaskEvent.id.desc())
    ).first()
    return event.data if event is not None and event.data.get("iteration") == task.current_iteration else None


def poll(
    session: Session, org_id: str, task_id: str, after_id: int, limit: int = PAGE
) -> tuple[MLTask, list[TaskEvent]]:
    """The task and its events after `after_id`. The task is read first: if it has ended, its last events (written
    with its last status, in one transaction) are among those read after it."""
    task = get_owned(session, MLTask, org_id, task_id, "task")
    query = (
        select(TaskEvent)
        .where(TaskEvent.task_id == task_id, TaskEvent.id > after_id)
        .order_by(TaskEvent.id)
        .limit(limit)
    )
    return task, list(session.scalars(query))


class ProgressRecorder:
    """Writes a running phase's progress as `progress` events: at most one every `interval` seconds, but always a new
    stage and the last step, so a short phase shows its end. Each in its own short transaction: a long phase never holds
    the database."""

    def __init__(self, sessions: sessionmaker, task_id: str, iteration: int, phase: str, interval: float):
        self.sessions, self.task_id, self.iteration, self.phase, self.interval = (
            sessions,
            task_id,
            iteration,
            phase,
            interval,
        )
        self._last, self._stage = float("-inf"), None

    def __call__(self, **progress: Any) -> None:
        now = time.monotonic()
        finished = progress.get("step") is not None and progress.get("step") == progress.get("total_steps")
        if now - self._last < self.interval and progress.get("stage") == self._stage and not finished:
            return
        self._last, self._stage = now, progress.get("stage")
        with self.sessions.begin() as session:
            record(session, self.task_id, PROGRESS, iteration=self.iteration, phase=self.phase, **progress)
