"""Concurrent standard runs on the embedded stack (issue 13): N standard tasks created and started at once through the
HTTP API, with the real activities on a tiny random-weight model, against single runs on the same stack.

    python -m bench.concurrent_runs [--tasks 50] [--single-runs 5] [--out bench/results/concurrent_runs.json]

The stack is the product's embedded one, as processes (`cli.stack.Stack`, what `make dev` runs): a Temporal dev server
on a SQLite file, `wlops api` (reached over HTTP), `wlops serve` (idle here) and one `wlops worker --pool …` process per
pool (control, optimize, train, evaluate) at the default concurrency (optimize 2, train 1, evaluate 1, bookkeeping 8),
with SQLite metadata and local object storage in a temporary data directory, on free ports. Only the running-task quota
is raised (WLOPS_MAX_RUNNING_TASKS_PER_ORG = N + 1; at the default, 2, the third start answers 429), and the access
token lives a day, so the bench never refreshes it. The model is the tests' tiny one (2 layers, random weights,
SmolLM2's real tokenizer), the dataset the end-to-end tests' 48 generated questions.

The single runs come first, one after another, each `--settle-seconds` after the previous one ended; the first pays the
workers' warm-up and is reported apart from the reference figure. Then the N tasks are created and started (the start
requests at once, with asyncio.gather), and the bench polls the API until every task is terminal or the timeout passes.

Definitions, per run, from its Temporal history (a standard run has 3 phases: optimize, train, evaluate):
- wall: WorkflowExecutionStarted → the workflow's close event;
- execution: Σ over its activities of ActivityTaskStarted → the activity's close event (the last attempt running on a
  worker); every activity counts: the three phases and the build_report and register_final_adapter bookkeeping;
- queue wait: Σ ActivityTaskScheduled → ActivityTaskStarted, waiting in a task queue for a free worker slot (where a
  pool's concurrency limit shows at load; after a retry it also holds the failed attempts and the back-off);
- orchestration overhead per phase: (wall − execution − queue wait) / 3, shown in three parts: workflow tasks waiting
  for the control worker (WorkflowTaskScheduled → Started), workflow tasks being processed (Started → Completed: the
  workflow code and the database projection's local activities, which count as orchestration as in
  bench/orchestration_overhead), and the rest, between one event and the next (the server's and the SDK's round trips).

At load: makespan is the first start request → the last workflow close (from the histories); the API's view of it (the
first poll that saw every task terminal) is shown beside it. Lost: a created task without a database row, one not
terminal at the timeout, or one whose projection disagrees with Temporal (status, or a COMPLETED task without its three
COMPLETED executions). Retries: activities whose last attempt was > 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, write_result
from cli.stack import Stack, temporal_dev_server, wait_for_port
from core.settings import (
    TASK_QUEUE_BOOKKEEPING,
    TASK_QUEUE_EVALUATE,
    TASK_QUEUE_OPTIMIZE,
    TASK_QUEUE_TRAIN,
    Settings,
    configure_process_environment,
)
from temporal_client import connect
from testkit.documents import write_dataset
from testkit.histories import RunTiming, workflow_runs
from testkit.model import build_tiny_model
from testkit.polling import poll_until
from testkit.servers import free_port

TINY_HYPERPARAMETERS = {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "max_seq_length": 96}
PHASES = 3  # a standard run: optimize, train, evaluate
TARGET_RATIO = 2.0  # overhead per phase at load / single run
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
DB_STATUS_OF_CLOSE = {"completed": "COMPLETED", "failed": "FAILED", "canceled": "CANCELLED"}


@dataclass
class Started:
    """A task the bench created, and what its start request did."""

    task_id: str
    requested_at: datetime | None = None  # UTC, naive like the history's event times
    start_status: int | None = None
    start_ms: float | None = None
    seen_terminal_at: datetime | None = None  # the first poll that saw it terminal


@dataclass
class RunFigures:
    task_id: str
    db_status: str | None
    close: str | None
    wall_seconds: float
    execution_seconds: float
    queue_wait_seconds: float
    workflow_task_wait_seconds: float
    workflow_task_seconds: float
    overhead_ms_per_phase: float | None
    retries: int
    start_delay_seconds: float | None  # start request sent → WorkflowExecutionStarted
    closed_at: datetime | None = None
    # each workflow task's (wait, processing), in order
    workflow_tasks_ms: list[tuple[float, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    activities: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "closed_at": self.closed_at.isoformat() + "Z" if self.closed_at else None}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: list[float], digits: int = 1) -> dict[str, float | None]:
    p95 = percentile(values, 95)
    if p95 is None:  # no values
        return {"median": None, "p95": None, "max": None}
    return {
        "median": round(statistics.median(values), digits),
        "p95": round(p95, digits),
        "max": round(max(values), digits),
    }


def run_figures(started: Started, runs: list[RunTiming], db_status: str | None) -> RunFigures:
    """One task's figures from its workflow runs (see the module docstring for the definitions)."""
    activities = [a for run in runs for a in run.activities]
    last = runs[-1] if runs else None
    closed_at = last.closed if last is not None and last.close != "continued_as_new" else None
    closed = closed_at is not None
    wall = (closed_at - runs[0].started).total_seconds() if closed_at is not None else 0.0
    execution = sum(a.execution_seconds for a in activities)
    waiting = sum(a.queue_wait_seconds for a in activities)
    problems = []
    if db_status is None:
        problems.append("no database row")
    elif db_status not in TERMINAL:
        problems.append(f"not terminal: {db_status}")
    if last is None:
        problems.append("no workflow")
    elif not closed:
        problems.append("workflow still running")
    elif DB_STATUS_OF_CLOSE.get(last.close or "") != db_status:
        problems.append(f"database says {db_status}, Temporal {last.close}")
    return RunFigures(
        task_id=started.task_id,
        db_status=db_status,
        close=last.close if last else None,
        wall_seconds=round(wall, 3),
        execution_seconds=round(execution, 3),
        queue_wait_seconds=round(waiting, 3),
        workflow_task_wait_seconds=round(sum(run.workflow_task_wait_seconds for run in runs), 3),
        workflow_task_seconds=round(sum(run.workflow_task_seconds for run in runs), 3),
        overhead_ms_per_phase=round(1000 * (wall - execution - waiting) / PHASES, 1) if closed else None,
        retries=sum(1 for a in activities if a.attempt > 1),
        start_delay_seconds=round((runs[0].started - started.requested_at).total_seconds(), 3)
        if runs and started.requested_at
        else None,
        closed_at=closed_at,
        problems=problems,
        workflow_tasks_ms=[
            (round(1000 * t.wait_seconds, 1), round(1000 * t.processing_seconds, 1))
            for run in runs
            for t in run.workflow_tasks
        ],
        activities={
            a.name: {
                "execution_seconds": round(a.execution_seconds, 3),
                "queue_wait_seconds": round(a.queue_wait_seconds, 3),
                "attempt": a.attempt,
                "task_queue": a.task_queue,
            }
            for a in activities
        },
    )


def by_activity(figures: list[RunFigures]) -> dict[str, dict[str, Any]]:
    """Per activity type: median and p95 of execution and queue wait, and the execution summed over every run."""
    names = sorted({name for f in figures for name in f.activities})
    out = {}
    for name in names:
        rows = [f.activities[name] for f in figures if name in f.activities]
        out[name] = {
            "task_queue": rows[0]["task_queue"],
            "execution_seconds": spread([r["execution_seconds"] for r in rows], 3),
            "queue_wait_seconds": spread([r["queue_wait_seconds"] for r in rows], 3),
            "execution_seconds_sum": round(sum(r["execution_seconds"] for r in rows), 2),
        }
    return out


def by_workflow_task(figures: list[RunFigures]) -> list[dict[str, Any]]:
    """Per workflow task, in the order of the run (the first is the run's start): median and max of its wait and
    processing over the runs, in ms. Where the overhead at load goes: spread over the run, or in the tasks that met
    the others."""
    count = min((len(f.workflow_tasks_ms) for f in figures), default=0)
    return [
        {
            "workflow_task": i + 1,
            "wait_ms": spread([f.workflow_tasks_ms[i][0] for f in figures]),
            "processing_ms": spread([f.workflow_tasks_ms[i][1] for f in figures]),
        }
        for i in range(count)
    ]


START_WORKFLOW_TASKS = (
    2  # a standard run's first two workflow tasks: its start (project it, schedule optimize), then schedule train
)


def start_and_rest(figure: RunFigures) -> tuple[float, float]:
    """The overhead split in two (ms): the run's first START_WORKFLOW_TASKS workflow tasks (wait + processing), where
    runs started together meet, and the rest of the overhead per phase."""
    assert figure.overhead_ms_per_phase is not None, "only a closed run has an overhead"
    start = sum(wait + processing for wait, processing in figure.workflow_tasks_ms[:START_WORKFLOW_TASKS])
    return start, figure.overhead_ms_per_phase - start / PHASES


def admission_seconds(figure: RunFigures) -> float | None:
    """The start request sent -> the run's first workflow task completed (the run admitted: projected, its first
    phase scheduled): the start delay, then that task's wait and processing."""
    if figure.start_delay_seconds is None or not figure.workflow_tasks_ms:
        return None
    wait, processing = figure.workflow_tasks_ms[0]
    return figure.start_delay_seconds + (wait + processing) / 1000


def ideal_makespan(per_queue: dict[str, float], concurrency: dict[str, int]) -> tuple[str, float] | None:
    """The busiest pool: (its task queue, its summed activity time / its concurrency), a bound no schedule beats."""
    loads = {q: seconds / concurrency[q] for q, seconds in per_queue.items() if q in concurrency}
    if not loads:
        return None
    busiest = max(loads, key=lambda q: loads[q])
    return busiest, loads[busiest]


def summarize(figures: list[RunFigures]) -> dict[str, Any]:
    closed = [f for f in figures if f.overhead_ms_per_phase is not None]
    split = [start_and_rest(f) for f in closed]
    admissions = [a for f in figures if (a := admission_seconds(f)) is not None]
    return {
        "runs": len(figures),
        "admission_seconds": {
            "p50": round(percentile(admissions, 50) or 0, 3) if admissions else None,
            "p99": round(percentile(admissions, 99) or 0, 3) if admissions else None,
            "max": round(max(admissions), 3) if admissions else None,
        },
        "overhead_ms_per_phase": spread(
            [overhead for f in closed if (overhead := f.overhead_ms_per_phase) is not None]
        ),
        "wall_seconds": spread([f.wall_seconds for f in closed], 2),
        "execution_seconds": spread([f.execution_seconds for f in closed], 2),
        "queue_wait_seconds": spread([f.queue_wait_seconds for f in closed], 2),
        "overhead_parts_ms_per_phase": {
            "workflow_task_wait": spread([1000 * f.workflow_task_wait_seconds / PHASES for f in closed]),
            "workflow_task_processing": spread([1000 * f.workflow_task_seconds / PHASES for f in closed]),
            "between_events": spread(
                [
                    overhead - 1000 * (f.workflow_task_wait_seconds + f.workflow_task_seconds) / PHASES
                    for f in closed
                    if (overhead := f.overhead_ms_per_phase) is not None
                ]
            ),
        },
        "start_ms": spread([start for start, _ in split]),
        "overhead_after_start_ms_per_phase": spread([rest for _, rest in split]),
        "by_workflow_task": by_workflow_task(closed),
        "start_delay_ms": spread([1000 * f.start_delay_seconds for f in figures if f.start_delay_seconds is not None]),
        "by_activity": by_activity(figures),
    }


# ---------------------------------------------------------------- the API side


async def create_and_start(api: httpx.AsyncClient, dataset_id: str, model_dir: Path, names: list[str]) -> list[Started]:
    """Create the tasks, then send every start request at once."""
    created = await asyncio.gather(
        *(
            api.post(
                "/api/v1/tasks/standard",
                json={
                    "task_name": name,
                    "model_name": str(model_dir),
                    "dataset_id": dataset_id,
                    "hyperparameters": TINY_HYPERPARAMETERS,
                },
            )
            for name in names
        )
    )
    for response in created:
        if response.status_code != 201:
            raise SystemExit(f"creating a task answered {response.status_code}: {response.text}")
    tasks = [Started(response.json()["task_id"]) for response in created]

    async def start(task: Started) -> None:
        task.requested_at, sent = utcnow(), time.perf_counter()
        response = await api.post(f"/api/v1/tasks/{task.task_id}/start")
        task.start_status, task.start_ms = response.status_code, round(1000 * (time.perf_counter() - sent), 1)

    await asyncio.gather(*(start(task) for task in tasks))
    return tasks


async def db_statuses(api: httpx.AsyncClient) -> dict[str, str]:
    """Every task's status as the API lists it (the database projection), page by page."""
    statuses, offset = {}, 0
    while True:
        page = (await api.get("/api/v1/tasks", params={"limit": 200, "offset": offset})).json()
        statuses.update({t["task_id"]: t["status"] for t in page["items"]})
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return statuses


async def wait_terminal(api: httpx.AsyncClient, tasks: list[Started], timeout: float, poll: float = 1.0) -> None:
    """Until every task has ended in the database (each one's end noted when first seen), or `timeout` seconds."""
    last_print = 0.0

    async def all_ended() -> bool:
        nonlocal last_print
        statuses = await db_statuses(api)
        now = utcnow()
        for task in tasks:
            if task.seen_terminal_at is None and statuses.get(task.task_id) in TERMINAL:
                task.seen_terminal_at = now
        if time.monotonic() - last_print > 15:
            last_print = time.monotonic()
            print(f"  {dict(Counter(statuses.get(t.task_id, 'missing') for t in tasks))}", flush=True)
        return all(task.seen_terminal_at for task in tasks)

    with contextlib.suppress(TimeoutError):  # the runs that never end are reported as such by their figures
        await poll_until(all_ended, timeout=timeout, interval=poll, what="every run ended")


async def figures_of(api: httpx.AsyncClient, client, tasks: list[Started]) -> list[RunFigures]:
    statuses = await db_statuses(api)
    figures = []
    for task in tasks:
        figure = run_figures(task, await workflow_runs(client, task.task_id), statuses.get(task.task_id))
        if figure.db_status == "COMPLETED":
            executions = (await api.get(f"/api/v1/tasks/{task.task_id}/executions")).json()
            if [(e["phase"], e["status"]) for e in executions] != [
                (p, "COMPLETED") for p in ("OPTIMIZING", "TRAINING", "EVALUATING")
            ]:
                figure.problems.append(f"executions: {[(e['phase'], e['status']) for e in executions]}")
        figures.append(figure)
    return figures


async def run_batch(
    api, client, dataset_id: str, model_dir: Path, names: list[str], timeout: float
) -> tuple[list[Started], list[RunFigures]]:
    tasks = await create_and_start(api, dataset_id, model_dir, names)
    await wait_terminal(api, tasks, timeout)
    return tasks, await figures_of(api, client, tasks)


# ---------------------------------------------------------------- the measurement


async def measure(
    settings: Settings,
    model_dir: Path,
    dataset: Path,
    n_tasks: int,
    single_runs: int,
    settle: float,
    timeout: float | None,
) -> dict:
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=120) as api:
        login = await api.post(
            "/api/v1/auth/login", json={"username": settings.dev_username, "password": settings.dev_password}
        )
        api.headers["Authorization"] = (
            f"Bearer {login.raise_for_status().json()['access_token']}"  # it lives the whole bench (stack_settings)
        )
        uploaded = await api.post(
            "/api/v1/datasets", files={"file": (dataset.name, dataset.read_bytes())}, data={"name": "concurrent runs"}
        )
        dataset_id = uploaded.raise_for_status().json()["dataset_id"]
        client = await connect(settings)

        singles: list[RunFigures] = []
        for i in range(single_runs):
            await asyncio.sleep(settle)
            _, figures = await run_batch(api, client, dataset_id, model_dir, [f"single {i + 1}"], 600)
            singles += figures
            print(
                f"single run {i + 1}: {figures[0].db_status}, wall {figures[0].wall_seconds} s, "
                f"overhead {figures[0].overhead_ms_per_phase} ms/phase",
                flush=True,
            )
        reference = singles[1:] if len(singles) > 1 else singles  # the first pays the workers' warm-up
        reference_wall = statistics.median(f.wall_seconds for f in reference)
        timeout = timeout or 300 + 3 * n_tasks * reference_wall

        await asyncio.sleep(settle)
        print(f"starting {n_tasks} tasks at once (timeout {timeout:.0f} s)", flush=True)
        clock = time.monotonic()
        tasks, load = await run_batch(
            api, client, dataset_id, model_dir, [f"concurrent {i + 1}" for i in range(n_tasks)], timeout
        )
        print(f"load done in {time.monotonic() - clock:.0f} s", flush=True)

    first_request = min(t.requested_at for t in tasks if t.requested_at is not None)  # every start was requested
    closes = [f.closed_at for f in load if f.closed_at is not None]
    makespan = (max(closes) - first_request).total_seconds() if closes else None
    seen = [t.seen_terminal_at for t in tasks if t.seen_terminal_at is not None]
    completed = sum(1 for f in load if f.db_status == "COMPLETED" and not f.problems)
    failed = sum(1 for f in load if f.db_status == "FAILED" and not f.problems)
    lost = [{"task_id": f.task_id, "problems": f.problems} for f in load if f.problems]
    activity_sum = sum(f.execution_seconds for f in load)
    single_summary, load_summary = summarize(reference), summarize(load)
    ratio = _ratio(load_summary["overhead_ms_per_phase"]["median"], single_summary["overhead_ms_per_phase"]["median"])
    per_queue: defaultdict[str, float] = defaultdict(float)
    for f in load:
        for a in f.activities.values():
            per_queue[a["task_queue"]] += a["execution_seconds"]
    concurrency = {
        TASK_QUEUE_OPTIMIZE: settings.optimize_concurrency,
        TASK_QUEUE_TRAIN: settings.train_concurrency,
        TASK_QUEUE_EVALUATE: settings.evaluate_concurrency,
        TASK_QUEUE_BOOKKEEPING: settings.bookkeeping_concurrency,
    }
    bound = ideal_makespan(dict(per_queue), concurrency)
    return {
        "settings": {
            "tasks": n_tasks,
            "single_runs": single_runs,
            "warm_up_runs_excluded": len(singles) - len(reference),
            "settle_seconds": settle,
            "timeout_seconds": round(timeout),
            "hyperparameters": TINY_HYPERPARAMETERS,
            "model": "2-layer Llama, random weights, SmolLM2 tokenizer",
            "dataset": f"{dataset.name}: 48 generated question/answer rows (testkit.documents.write_dataset)",
            "stack": "cli.stack.Stack: temporal dev server (SQLite file), wlops api over HTTP, wlops serve (idle), "
            "one wlops worker process per pool",
            "concurrency": {
                "optimize": settings.optimize_concurrency,
                "train": settings.train_concurrency,
                "evaluate": settings.evaluate_concurrency,
                "bookkeeping": settings.bookkeeping_concurrency,
            },
            "max_running_tasks_per_org": settings.max_running_tasks_per_org,
            "access_token_minutes": settings.access_token_minutes,
            "database": "SQLite",
            "object_store": "local directory",
        },
        "definitions": {
            "wall": "per run: WorkflowExecutionStarted -> the workflow's close event",
            "execution": "per run: sum over its activities (phases and bookkeeping) of ActivityTaskStarted -> the "
            "activity's close event",
            "queue_wait": "per run: sum of ActivityTaskScheduled -> ActivityTaskStarted "
            "(waiting for a free worker slot)",
            "overhead_ms_per_phase": "per run: (wall - execution - queue_wait) / 3 phases; includes workflow tasks "
            "and the database projection",
            "overhead_parts_ms_per_phase": "the overhead split per phase: workflow_task_wait "
            "(WorkflowTaskScheduled -> Started, the workflow worker's queue), workflow_task_processing "
            "(WorkflowTaskStarted -> Completed: workflow code and the database projection's local activities it "
            "waits for) and between_events (the rest: the server's and the SDK's round trips between one event and "
            "the next)",
            "start": f"per run: its first {START_WORKFLOW_TASKS} workflow tasks, wait + processing "
            "(the start, then scheduling train)",
            "overhead_after_start_ms_per_phase": "per run: the overhead per phase less the start's share (start / 3)",
            "by_workflow_task": "per workflow task of a run, in order: median, p95 and max of its wait and "
            "processing over the runs",
            "start_delay": "the start request sent -> WorkflowExecutionStarted (through the API)",
            "admission": "per run: the start request sent -> its first workflow task completed (start delay + that "
            "task's wait and processing)",
            "busiest_pool": "the task queue whose summed activity time divided by its pool's concurrency is largest: "
            "no schedule finishes sooner; the makespan is reported against it",
            "makespan": "the first start request -> the last workflow close",
            "lost": "no database row, not terminal at the timeout, or a projection that disagrees with Temporal",
        },
        "single": {**single_summary, "warm_up": singles[0].as_json() if len(singles) > 1 else None},
        "load": {
            **load_summary,
            "completed": completed,
            "failed": failed,
            "lost": len(lost),
            "lost_details": lost,
            "start_requests": {
                "status_codes": dict(Counter(str(t.start_status) for t in tasks)),
                "latency_ms": spread([t.start_ms for t in tasks if t.start_ms is not None]),
            },
            "makespan_seconds": round(makespan, 2) if makespan else None,
            "api_observed_makespan_seconds": round((max(seen) - first_request).total_seconds(), 2) if seen else None,
            "activity_execution_seconds_sum": round(activity_sum, 2),
            "execution_seconds_sum_by_task_queue": {q: round(s, 2) for q, s in sorted(per_queue.items())},
            "makespan_over_busiest_queue": _ratio(makespan, max(per_queue.values()) if per_queue else None),
            "busiest_pool": {
                "task_queue": bound[0] if bound else None,
                "summed_activity_seconds_over_concurrency": round(bound[1], 2) if bound else None,
                "makespan_ratio": _ratio(makespan, bound[1] if bound else None),
            },
            "throughput_tasks_per_minute": round(60 * completed / makespan, 2) if makespan else None,
            "retries": sum(f.retries for f in load),
        },
        "restated": {  # issue 23: each figure measures one thing
            "admission_seconds_p50": load_summary["admission_seconds"]["p50"],
            "admission_seconds_p99": load_summary["admission_seconds"]["p99"],
            "single_run_admission_seconds_p50": single_summary["admission_seconds"]["p50"],
            "overhead_after_start_ratio_median": _ratio(
                load_summary["overhead_after_start_ms_per_phase"]["median"],
                single_summary["overhead_after_start_ms_per_phase"]["median"],
            ),
            "makespan_over_busiest_pool_bound": _ratio(makespan, bound[1] if bound else None),
            "runs_lost": len(lost),
        },
        "target": {
            "completed": f"{completed} of {n_tasks}",
            "lost": len(lost),
            "overhead_ratio_median": ratio,
            "overhead_ratio_p95": _ratio(
                load_summary["overhead_ms_per_phase"]["p95"], single_summary["overhead_ms_per_phase"]["p95"]
            ),
            "limit": TARGET_RATIO,
            "passes": completed == n_tasks and not lost and ratio is not None and ratio < TARGET_RATIO,
            "rule": f"{n_tasks} of {n_tasks} COMPLETED, none lost, and the median overhead per phase at load under "
            f"{TARGET_RATIO}x the single runs' median",
            "split": {  # where the ratio comes from: the runs' start, where they meet, and the rest of their lives
                "start_ratio_median": _ratio(load_summary["start_ms"]["median"], single_summary["start_ms"]["median"]),
                "after_start_ratio_median": _ratio(
                    load_summary["overhead_after_start_ms_per_phase"]["median"],
                    single_summary["overhead_after_start_ms_per_phase"]["median"],
                ),
            },
        },
        "runs": {"single": [f.as_json() for f in singles], "load": [f.as_json() for f in load]},
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


@contextmanager
def temporal_in_memory(settings: Settings, wanted: bool):
    """With `wanted`, a Temporal dev server that keeps its state in memory, which the stack then uses instead of its
    own."""
    if not wanted:
        yield settings
        return
    server = subprocess.Popen(
        temporal_dev_server(settings, None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(settings.temporal_port, 60, server)
        os.environ["WLOPS_TEMPORAL_ADDRESS"] = f"127.0.0.1:{settings.temporal_port}"
        yield Settings()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)


@contextmanager
def extra_control_workers(stack: Stack, count: int):
    """`count` more processes of the control pool beside the stack's own (Temporal spreads workflow tasks across
    them)."""
    processes = []
    with contextlib.ExitStack() as logs:
        for i in range(count):
            log = logs.enter_context(open(stack.log_dir / f"worker-control-{i + 2}.log", "ab"))
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cli.main", "worker", "--pool", "control", "--metrics-port", "0"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        try:
            yield
        finally:
            for process in processes:
                process.send_signal(signal.SIGINT)
                process.wait(30)


def stack_settings(data_dir: Path, n_tasks: int) -> Settings:
    """The embedded stack's settings, through the environment its child processes inherit: free ports, a fresh data
    directory, room for every task to run, and an access token that outlives the bench."""
    for name in ("WLOPS_TEMPORAL_ADDRESS", "WLOPS_DATABASE_URL", "WLOPS_S3_ENDPOINT", "WLOPS_MODEL_CACHE"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "WLOPS_DATA_DIR": str(data_dir),
            "WLOPS_MAX_RUNNING_TASKS_PER_ORG": str(n_tasks + 1),
            "WLOPS_ACCESS_TOKEN_MINUTES": "1440",
            **{
                f"WLOPS_{port}": str(free_port())
                for port in ("TEMPORAL_PORT", "TEMPORAL_UI_PORT", "API_PORT", "SERVE_PORT")
            },
        }
    )
    return Settings()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument(
        "--single-runs", type=int, default=5, help="single runs before the load; the first is the warm-up"
    )
    parser.add_argument(
        "--settle-seconds", type=float, default=2.0, help="pause before each single run and before the load"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds the load may take (default 300 + 3 x tasks x a single run's wall)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "concurrent_runs.json")
    parser.add_argument(
        "--temporal-in-memory",
        action="store_true",
        help="the Temporal dev server without its SQLite file (make dev keeps one)",
    )
    parser.add_argument(
        "--control-workers",
        type=int,
        default=1,
        help="processes of the control pool (workflows and bookkeeping); the stack runs one",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="put the stack's files (logs, databases) here and keep them (default: a temporary directory)",
    )
    args = parser.parse_args()
    clock, load_before = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="wlops-concurrent-") as tmp:
        data_dir = (args.keep or Path(tmp)).resolve() / "wlops"
        model_dir = build_tiny_model(Path(tmp) / "tiny-model")
        dataset = write_dataset(Path(tmp) / "faq.jsonl")
        settings = stack_settings(data_dir, args.tasks)
        with (
            temporal_in_memory(settings, args.temporal_in_memory) as settings,
            Stack(settings) as stack,
            extra_control_workers(stack, args.control_workers - 1),
        ):
            result = asyncio.run(
                measure(settings, model_dir, dataset, args.tasks, args.single_runs, args.settle_seconds, args.timeout)
            )
        result["settings"]["control_worker_processes"] = args.control_workers
        result["settings"]["temporal_persistence"] = (
            "in memory" if args.temporal_in_memory else "SQLite file (as make dev)"
        )
    result["settings"]["bench_seconds"] = round(time.monotonic() - clock)
    result["machine_notes"] = {
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "a shared 2-core machine: other work may run beside the bench (see the load averages)",
    }
    write_result("concurrent_runs", result, args.out)


if __name__ == "__main__":
    configure_process_environment()
    main()
