"""Retention: each organization may keep its QA history and its finished tasks' events for a number of days. A pass
deletes what is older in every organization that set a limit and records what it removed (a `RetentionRun` per
organization), in one transaction per organization. A running task's events are kept whatever their age: its event
stream replays them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, Delete, delete, or_, select
from sqlalchemy.orm import Session
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from core.status import TERMINAL_STATUSES
from db.models import MLTask, Organization, QAEntry, RetentionRun, TaskEvent
from schemas.workflow_io import RetentionInput
from temporal_client.workflows import RETENTION_SCHEDULE_ID, RetentionWorkflow


@dataclass
class Pruned:
    org_id: str
    qa_entries: int
    task_events: int


def prune_expired(session: Session, now: datetime) -> list[Pruned]:
    """Delete what each organization's retention has let expire by `now`; what was pruned, per organization."""
    orgs = session.scalars(
        select(Organization).where(
            or_(Organization.qa_retention_days.is_not(None), Organization.event_retention_days.is_not(None))
        )
    ).all()
    pruned = []
    for org in orgs:
        qa_before = now - timedelta(days=org.qa_retention_days) if org.qa_retention_days else None
        events_before = now - timedelta(days=org.event_retention_days) if org.event_retention_days else None
        qa_entries = task_events = 0
        if qa_before is not None:
            qa_entries = _deleted(
                session, delete(QAEntry).where(QAEntry.org_id == org.id, QAEntry.created_at < qa_before)
            )
        if events_before is not None:
            finished = select(MLTask.id).where(
                MLTask.org_id == org.id, MLTask.status.in_([s.value for s in TERMINAL_STATUSES])
            )
            task_events = _deleted(
                session, delete(TaskEvent).where(TaskEvent.task_id.in_(finished), TaskEvent.created_at < events_before)
            )
        session.add(
            RetentionRun(
                org_id=org.id,
                ran_at=now,
                qa_entries=qa_entries,
                task_events=task_events,
                qa_before=qa_before,
                events_before=events_before,
            )
        )
        session.commit()
        pruned.append(Pruned(org.id, qa_entries, task_events))
    return pruned


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE; how many rows it removed (a DELETE's result is a cursor result, which counts them)."""
    return cast(CursorResult, session.execute(statement)).rowcount


def recent_runs(session: Session, org_id: str, limit: int = 20) -> list[RetentionRun]:
    return list(
        session.scalars(
            select(RetentionRun).where(RetentionRun.org_id == org_id).order_by(RetentionRun.ran_at.desc()).limit(limit)
        )
    )


async def ensure_schedule(client: Client, settings: Settings) -> None:
    """The Temporal schedule that runs a retention pass every `retention_interval_hours`: made if missing, its interval
    brought in line if the setting changed (idempotent: every workflow pool start calls it)."""
    every = timedelta(hours=settings.retention_interval_hours)
    spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)])
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionWorkflow.run, RetentionInput(), id="retention-pass", task_queue=TASK_QUEUE_WORKFLOWS
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(RETENTION_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(RETENTION_SCHEDULE_ID)
        described = await handle.describe()
        if [i.every for i in described.schedule.spec.intervals] != [every]:

            def with_interval(update: ScheduleUpdateInput) -> ScheduleUpdate:
                update.description.schedule.spec = spec
                return ScheduleUpdate(schedule=update.description.schedule)

            await handle.update(with_interval)
