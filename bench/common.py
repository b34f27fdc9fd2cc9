"""What every benchmark shares: where results go, how a run is described, a tiny model to run the real code on,
and how a workflow's history turns into time inside activities, time waiting for a worker and the rest."""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
PHASE_ACTIVITIES = ("optimize_dataset", "train_adapter", "evaluate_adapter", "build_report")


def machine() -> dict[str, Any]:
    import torch

    info = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_result(name: str, result: dict[str, Any], path: Path | None = None) -> Path:
    """Write `result` with the date and the machine to `path` (default: bench/results/<name>.json) and print it."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "benchmark": name,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": machine(),
                **result,
            },
            indent=2,
        )
    )
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_tiny_model(folder: Path) -> Path:
    """A 2-layer Llama with random weights and SmolLM2's real tokenizer (as the tests' `tiny_model_dir`): real code paths, fast."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ml.base_model import SMOLLM2_GGUF, smollm2_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- histories → timings


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
        """Scheduled → started: waiting in the task queue for a free worker slot (and, after retries, the earlier attempts)."""
        return (self.started - self.scheduled).total_seconds() if self.started else 0.0

    @property
    def execution_seconds(self) -> float:
        """Started → closed: the (last) attempt running on a worker."""
        return (self.closed - self.started).total_seconds() if self.started and self.closed else 0.0


@dataclass
class WorkflowTaskTiming:
    """One workflow task of a history: scheduled, started by the workflow worker, and closed (completed, failed or timed out)."""

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


def run_timing(events: Iterable) -> RunTiming:
    """The timings of one run from its history events (temporalio.api.history.v1.HistoryEvent)."""
    activities: dict[int, ActivityTiming] = {}
    scheduled_tasks: dict[int, datetime] = {}
    workflow_tasks: dict[int, WorkflowTaskTiming] = {}  # by started event id
    started = closed = close = None
    markers = 0
    for event in events:
        at, kind = event.event_time.ToDatetime(), event.WhichOneof("attributes")
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


async def workflow_runs(client, workflow_id: str) -> list[RunTiming]:
    """Every run of the workflow (continue-as-new makes several), oldest first."""
    runs = []
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        history = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        runs.append(run_timing(history.events))
    return sorted(runs, key=lambda run: run.started)


async def seconds_inside_phases(client, workflow_id: str) -> float:
    """Time between ActivityTaskStarted and its completion for the phase activities, over every run of the workflow."""
    return sum(
        a.execution_seconds
        for run in await workflow_runs(client, workflow_id)
        for a in run.activities
        if a.outcome == "completed" and a.name in PHASE_ACTIVITIES
    )
