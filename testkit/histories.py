"""Reading workflow histories: each run's timings (time inside activities, time waiting for a worker and the rest),
and recording every run of a workflow for the replay test (tests/workflows/test_replay.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

HISTORIES = Path(__file__).resolve().parents[1] / "tests" / "workflows" / "histories"
RECORD = os.environ.get("WLOPS_RECORD_HISTORIES") == "1"
PHASE_ACTIVITIES = ("optimize_dataset", "train_adapter", "evaluate_adapter", "build_report")


@dataclass
class ActivityTiming:
    """One activity of a history: when it was scheduled, when its (last) attempt started and when it closed."""

    name: str
    task_queue: str
    scheduled: datetime
    started: datetime | None = None
    closed: datetime | None = None
    outcome: str = "open"  # completed | failed | timed_out | canceled | open
    attempt: int = 1  # the attempt that the started event records; earlier attempts leave no event of their own

    @property
    def queue_wait_seconds(self) -> float:
        """Scheduled → started: waiting in the task queue for a free worker slot (and, after retries, the earlier
        attempts)."""
        return (self.started - self.scheduled).total_seconds() if self.started else 0.0

    @property
    def execution_seconds(self) -> float:
        """Started → closed: the (last) attempt running on a worker."""
        return (self.closed - self.started).total_seconds() if self.started and self.closed else 0.0


@dataclass
class WorkflowTaskTiming:
    """One workflow task of a history: scheduled, started by the workflow worker, and closed (completed, failed or
    timed out)."""

    scheduled: datetime
    started: datetime
    closed: datetime | None = None

    @property
    def wait_seconds(self) -> float:
        """Scheduled → started: the workflow worker's own queue."""
        return (self.started - self.scheduled).total_seconds()

    @property
    def processing_seconds(self) -> float:
        """Started → closed: workflow code, with the local activities it waits for."""
        return (self.closed - self.started).total_seconds() if self.closed else 0.0


@dataclass
class RunTiming:
    """One workflow run, read from its history."""

    started: datetime
    closed: datetime | None
    close: str | None  # completed | failed | canceled | terminated | timed_out | continued_as_new; None while running
    activities: list[ActivityTiming]
    workflow_tasks: list[WorkflowTaskTiming]  # those a worker started, in order
    local_activities: (
        int  # markers recorded by local activities (the database projection), which count as orchestration
    )

    @property
    def workflow_task_wait_seconds(self) -> float:
        return sum(task.wait_seconds for task in self.workflow_tasks)

    @property
    def workflow_task_seconds(self) -> float:
        return sum(task.processing_seconds for task in self.workflow_tasks)

    @property
    def wall_seconds(self) -> float:
        return (self.closed - self.started).total_seconds() if self.closed else 0.0

    @property
    def overhead_seconds(self) -> float:
        """Orchestration: the run's wall time less its activities' execution and their wait in task queues."""
        return self.wall_seconds - sum(a.execution_seconds + a.queue_wait_seconds for a in self.activities)


_CLOSE_EVENTS = {
    f"workflow_execution_{close}_event_attributes": close
    for close in ("completed", "failed", "canceled", "terminated", "timed_out", "continued_as_new")
}
_ACTIVITY_CLOSE_EVENTS = {
    f"activity_task_{outcome}_event_attributes": outcome for outcome in ("completed", "failed", "timed_out", "canceled")
}


def run_timing(events: Iterable[HistoryEvent]) -> RunTiming:
    """The timings of one run from its history events (temporalio.api.history.v1.HistoryEvent)."""
    activities: dict[int, ActivityTiming] = {}
    scheduled_tasks: dict[int, datetime] = {}
    workflow_tasks: dict[int, WorkflowTaskTiming] = {}  # by started event id
    started = closed = close = None
    markers = 0
    for event in events:
        at, kind = event.event_time.ToDatetime(), event.WhichOneof("attributes")
        if kind is None:  # an event without attributes says nothing about timing
            continue
        attrs = getattr(event, kind)
        if kind == "workflow_execution_started_event_attributes":
            started = at
        elif kind in _CLOSE_EVENTS:
            closed, close = at, _CLOSE_EVENTS[kind]
        elif kind == "workflow_task_scheduled_event_attributes":
            scheduled_tasks[event.event_id] = at
        elif kind == "workflow_task_started_event_attributes":
            workflow_tasks[event.event_id] = WorkflowTaskTiming(scheduled_tasks[attrs.scheduled_event_id], at)
        elif kind in (
            "workflow_task_completed_event_attributes",
            "workflow_task_failed_event_attributes",
            "workflow_task_timed_out_event_attributes",
        ):
            if attrs.started_event_id in workflow_tasks:  # (one that timed out before a worker started it has none)
                workflow_tasks[attrs.started_event_id].closed = at
        elif kind == "marker_recorded_event_attributes":
            markers += 1
        elif kind == "activity_task_scheduled_event_attributes":
            activities[event.event_id] = ActivityTiming(attrs.activity_type.name, attrs.task_queue.name, at)
        elif kind == "activity_task_started_event_attributes":
            activities[attrs.scheduled_event_id].started, activities[attrs.scheduled_event_id].attempt = (
                at,
                attrs.attempt,
            )
        elif kind in _ACTIVITY_CLOSE_EVENTS:
            activities[attrs.scheduled_event_id].closed, activities[attrs.scheduled_event_id].outcome = (
                at,
                _ACTIVITY_CLOSE_EVENTS[kind],
            )
    if started is None:
        raise ValueError("a history without its WorkflowExecutionStarted event")
    return RunTiming(started, closed, close, list(activities.values()), list(workflow_tasks.values()), markers)


async def workflow_runs(client: Client, workflow_id: str) -> list[RunTiming]:
    """Every run of the workflow (continue-as-new makes several), oldest first."""
    runs = []
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        history = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        runs.append(run_timing(history.events))
    return sorted(runs, key=lambda run: run.started)


async def seconds_inside_phases(client: Client, workflow_id: str) -> float:
    """Time between ActivityTaskStarted and its completion for the phase activities, over every run of the workflow."""
    return sum(
        a.execution_seconds
        for run in await workflow_runs(client, workflow_id)
        for a in run.activities
        if a.outcome == "completed" and a.name in PHASE_ACTIVITIES
    )


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With WLOPS_RECORD_HISTORIES=1, save every run of the workflow for the replay test (as new files, never over
    old ones)."""
    if not RECORD:
        return
    runs: list[dict[str, Any]] = []
    run_id = handle.result_run_id
    client = handle._client
    # walk the continue-as-new chain from the first run
    run_id = handle.first_execution_run_id or run_id or (await handle.describe()).run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs.append(json.loads(history.to_json()))
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
    HISTORIES.mkdir(exist_ok=True)
    paths = [HISTORIES / f"{name}-run{index + 1}.json" for index in range(len(runs))]
    kept = [p.name for p in paths if p.exists()]
    assert not kept, f"{kept} are kept histories: never overwrite one; record the new shape under a new name"
    for path, run in zip(paths, runs, strict=True):
        path.write_text(json.dumps(run))
