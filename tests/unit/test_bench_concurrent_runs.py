"""bench/concurrent_runs' arithmetic: a history's events → execution, queue wait and overhead per phase, and what
counts as lost."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import ActivityType
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskScheduledEventAttributes,
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    WorkflowExecutionCompletedEventAttributes,
    WorkflowExecutionStartedEventAttributes,
    WorkflowTaskCompletedEventAttributes,
    WorkflowTaskScheduledEventAttributes,
    WorkflowTaskStartedEventAttributes,
)
from temporalio.api.taskqueue.v1 import TaskQueue

from bench.concurrent_runs import (
    Started,
    admission_seconds,
    by_workflow_task,
    ideal_makespan,
    percentile,
    run_figures,
    start_and_rest,
)
from testkit.histories import run_timing

T0 = datetime(2026, 11, 28, 12, 0, 0)


def event(event_id: int, seconds: float, **attributes) -> HistoryEvent:
    at = Timestamp()
    at.FromDatetime(T0 + timedelta(seconds=seconds))
    return HistoryEvent(event_id=event_id, event_time=at, **attributes)


def history(closed: bool = True) -> list[HistoryEvent]:
    """Start, one workflow task with a projection write, train_adapter waiting 2 s for the worker and running 3 s
    (attempt 2), done."""
    events = [
        event(1, 0, workflow_execution_started_event_attributes=WorkflowExecutionStartedEventAttributes()),
        event(2, 0, workflow_task_scheduled_event_attributes=WorkflowTaskScheduledEventAttributes()),
        event(3, 0.01, workflow_task_started_event_attributes=WorkflowTaskStartedEventAttributes(scheduled_event_id=2)),
        event(
            4,
            0.03,
            workflow_task_completed_event_attributes=WorkflowTaskCompletedEventAttributes(
                scheduled_event_id=2, started_event_id=3
            ),
        ),
        event(
            5, 0.03, marker_recorded_event_attributes=MarkerRecordedEventAttributes(marker_name="core_local_activity")
        ),
        event(
            6,
            0.03,
            activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
                activity_type=ActivityType(name="train_adapter"), task_queue=TaskQueue(name="wlops-train")
            ),
        ),
        event(
            7,
            2.03,
            activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(scheduled_event_id=6, attempt=2),
        ),
        event(
            8,
            5.03,
            activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
                scheduled_event_id=6, started_event_id=7
            ),
        ),
        event(9, 5.03, workflow_task_scheduled_event_attributes=WorkflowTaskScheduledEventAttributes()),
        event(
            10, 5.05, workflow_task_started_event_attributes=WorkflowTaskStartedEventAttributes(scheduled_event_id=9)
        ),
        event(
            11,
            5.06,
            workflow_task_completed_event_attributes=WorkflowTaskCompletedEventAttributes(
                scheduled_event_id=9, started_event_id=10
            ),
        ),
        event(12, 5.06, workflow_execution_completed_event_attributes=WorkflowExecutionCompletedEventAttributes()),
    ]
    return events if closed else events[:6]


def test_history_timings():
    run = run_timing(history())
    assert run.close == "completed" and run.wall_seconds == pytest.approx(5.06)
    [train] = run.activities
    assert (train.name, train.task_queue, train.attempt, train.outcome) == (
        "train_adapter",
        "wlops-train",
        2,
        "completed",
    )
    assert train.queue_wait_seconds == pytest.approx(2.0) and train.execution_seconds == pytest.approx(3.0)
    assert run.workflow_task_wait_seconds == pytest.approx(0.03) and run.workflow_task_seconds == pytest.approx(0.03)
    assert run.local_activities == 1


def test_overhead_is_wall_minus_execution_and_queue_wait_per_phase():
    figures = run_figures(Started("t1", requested_at=T0 - timedelta(seconds=0.2)), [run_timing(history())], "COMPLETED")
    assert figures.overhead_ms_per_phase == pytest.approx(1000 * (5.06 - 3.0 - 2.0) / 3, abs=0.1)
    assert (figures.retries, figures.start_delay_seconds, figures.problems) == (1, 0.2, [])


def test_what_counts_as_lost():
    assert run_figures(Started("t1"), [run_timing(history())], "FAILED").problems == [
        "database says FAILED, Temporal completed"
    ]
    assert run_figures(Started("t1"), [run_timing(history())], None).problems[0] == "no database row"
    running = run_figures(Started("t1"), [run_timing(history(closed=False))], "TRAINING")
    assert (
        running.problems == ["not terminal: TRAINING", "workflow still running"]
        and running.overhead_ms_per_phase is None
    )
    [scheduled] = run_timing(history(closed=False)).activities
    assert (scheduled.outcome, scheduled.queue_wait_seconds, scheduled.execution_seconds) == ("open", 0.0, 0.0)


def test_percentile():
    assert percentile([], 95) is None and percentile([7.0], 95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5) and percentile(
        [1.0, 2.0, 3.0, 4.0], 95
    ) == pytest.approx(3.85)


def test_each_workflow_task_and_the_start_of_a_run():
    run = run_timing(history())
    assert [(t.wait_seconds, t.processing_seconds) for t in run.workflow_tasks] == [
        pytest.approx((0.01, 0.02)),
        pytest.approx((0.02, 0.01)),
    ]
    figures = run_figures(Started("t1"), [run], "COMPLETED")
    assert figures.workflow_tasks_ms == [(10.0, 20.0), (20.0, 10.0)]
    start, rest = start_and_rest(figures)
    assert start == pytest.approx(60.0) and rest == pytest.approx(figures.overhead_ms_per_phase - 20.0)
    other = run_figures(Started("t2"), [run_timing(history())], "COMPLETED")
    other.workflow_tasks_ms = [(30.0, 40.0), (20.0, 10.0)]
    first, second = by_workflow_task([figures, other])
    assert first == {
        "workflow_task": 1,
        "wait_ms": {"median": 20.0, "p95": 29.0, "max": 30.0},
        "processing_ms": {"median": 30.0, "p95": 39.0, "max": 40.0},
    }
    assert second["wait_ms"]["median"] == 20.0


def test_admission_and_the_busiest_pools_bound():
    figures = run_figures(Started("t1", requested_at=T0 - timedelta(seconds=0.2)), [run_timing(history())], "COMPLETED")
    # the start request 0.2 s before the run started, then its first workflow task: 10 ms waiting, 20 ms processing
    assert admission_seconds(figures) == pytest.approx(0.23)
    assert admission_seconds(run_figures(Started("t2"), [run_timing(history())], "COMPLETED")) is None
    per_queue = {"optimize": 20.0, "train": 30.0, "evaluate": 24.0, "workflows": 100.0}
    # train: 30 s on one slot; optimize: 20 s over 2 slots; the workflow queue's local activities have no pool
    assert ideal_makespan(per_queue, {"optimize": 2, "train": 1, "evaluate": 2}) == ("train", 30.0)
    assert ideal_makespan(per_queue, {"optimize": 2, "train": 4, "evaluate": 1}) == ("evaluate", 24.0)
    assert ideal_makespan({}, {"train": 1}) is None
