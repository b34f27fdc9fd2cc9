"""Orchestration overhead per phase on the embedded Temporal server: a run's wall time minus the time spent
inside its phase activities (from the history's started/completed events), divided by the number of phases.
The phases are instant stand-ins (the ones the orchestration tests use); bookkeeping (the database
projection) is real and counts as overhead.

    python -m bench.orchestration_overhead [--iterations 3] [--repeats 3] [--settle-seconds 2]

Runs start `--settle-seconds` after the previous one ended: the dev server keeps working for about a
second after a workflow closes, and a run started in that window measured about twice the overhead
(continuous runs back to back: ~110 ms per phase; a standard run right after a continuous one: ~150 ms;
the cause is on the server side or in the workers' hand-over, not investigated further). A real run follows minutes of
training, never a closing workflow a millisecond earlier.

    python -m bench.orchestration_overhead --concurrent 50 [--step-seconds 0.05] [--database-url URL]

runs N standard runs at once instead, with stand-in phases that take a little time without using the CPU (10 training
steps of `--step-seconds`, asleep), against 3 single runs in the same process: what orchestration alone costs when many
runs progress together (bench/concurrent_runs measures the same with the real phases on the tiny model). Per phase,
from each run's history: workflow tasks waiting for the workflow worker, workflow tasks being processed (the workflow
code and the projection's local activities), and the overhead (wall − activities − their queue wait).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.context import ActivityContext
from bench.common import RESULTS, write_result
from cli.stack import temporal_binary
from core.settings import TASK_QUEUE_WORKFLOWS, Settings, configure_process_environment
from core.status import TaskMode
from db.models import MLTask
from db.session import migrate
from schemas.workflow_io import FineTuningResult
from services.tasks import workflow_input
from temporal_client.workflows import FineTuningWorkflow
from testkit.factories import make_task
from testkit.histories import seconds_inside_phases, workflow_runs
from testkit.phases import FakePhases, running_workers


async def measure(iterations: int, repeats: int, settle_seconds: float) -> dict:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error"
    )
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp))
            migrate(settings.resolved_database_url)
            ctx = ActivityContext.from_settings(settings)
            phases = FakePhases(ctx, train_steps=0)
            async with running_workers(env.client, ctx, phases.activities()):
                for mode, n in [(TaskMode.STANDARD, 1)] * repeats + [(TaskMode.CONTINUOUS, iterations)] * repeats:
                    await asyncio.sleep(settle_seconds)
                    task = make_task(ctx, mode=mode, max_iterations=n)
                    started = time.perf_counter()
                    await (await _start(env.client, task, ctx.settings)).result()
                    wall = time.perf_counter() - started
                    inside = await seconds_inside_phases(env.client, task.id)
                    runs.append(
                        {
                            "mode": mode.value,
                            "iterations": n,
                            "phases": 3 * n,
                            "wall_seconds": round(wall, 3),
                            "inside_activities_seconds": round(inside, 4),
                            "overhead_ms_per_phase": round(1000 * (wall - inside) / (3 * n), 1),
                        }
                    )
    finally:
        await env.shutdown()
    per_phase = [r["overhead_ms_per_phase"] for r in runs[1:]]  # the first run pays worker warm-up
    by_mode = {
        mode: statistics.median(r["overhead_ms_per_phase"] for r in runs[1:] if r["mode"] == mode)
        for mode in ("STANDARD", "CONTINUOUS")
    }
    return {
        "runs": runs,
        "settle_seconds": settle_seconds,
        "median_overhead_ms_per_phase": statistics.median(per_phase),
        "median_by_mode": by_mode,
        "max_overhead_ms_per_phase": max(per_phase),
        "target_ms_per_phase": 100,
        "meets_target": max(by_mode.values()) < 100,
        "note": "overhead includes the database projection (a local activity per transition); continuous runs "
        "continue-as-new every 10 iterations",
    }


async def measure_concurrent(
    n: int, step_seconds: float, database_url: str | None, bookkeeping_concurrency: int
) -> dict:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error"
    )
    figures = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp), database_url=database_url, bookkeeping_concurrency=bookkeeping_concurrency
            )
            migrate(settings.resolved_database_url)
            ctx = ActivityContext.from_settings(settings)
            async with running_workers(
                env.client, ctx, FakePhases(ctx, train_steps=10, step_seconds=step_seconds).activities()
            ):
                for label, count in (("warm_up", 1), ("single", 3), ("concurrent", n)):
                    tasks = [make_task(ctx) for _ in range(count)]
                    if label == "concurrent":
                        handles = await asyncio.gather(*(_start(env.client, task, settings) for task in tasks))
                        await asyncio.gather(*(handle.result() for handle in handles))
                    else:
                        for task in tasks:
                            await (await _start(env.client, task, settings)).result()
                    figures[label] = _per_phase([(await workflow_runs(env.client, task.id))[0] for task in tasks])
    finally:
        await env.shutdown()
    single, concurrent = figures["single"]["overhead_ms_per_phase"], figures["concurrent"]["overhead_ms_per_phase"]
    return {
        "runs_at_once": n,
        "step_seconds": step_seconds,
        "database": "PostgreSQL" if database_url else "SQLite",
        "bookkeeping_concurrency": bookkeeping_concurrency,
        "single": figures["single"],
        "concurrent": figures["concurrent"],
        "overhead_ratio": round(concurrent / single, 2),
        "target_ratio": 2.0,
        "meets_target": concurrent / single < 2.0,
    }


async def _start(
    client: Client, task: MLTask, settings: Settings
) -> WorkflowHandle[FineTuningWorkflow, FineTuningResult]:
    """Start the task's workflow with the input the service would give it (its real timeouts)."""
    return await client.start_workflow(
        FineTuningWorkflow.run, workflow_input(task, settings), id=task.id, task_queue=TASK_QUEUE_WORKFLOWS
    )


def _per_phase(runs) -> dict:
    """Medians over the runs, per phase (a standard run has 3), in milliseconds."""

    def median(values) -> float:
        return round(statistics.median(values), 1)

    return {
        "workflow_task_wait_ms_per_phase": median(1000 * r.workflow_task_wait_seconds / 3 for r in runs),
        "workflow_task_processing_ms_per_phase": median(1000 * r.workflow_task_seconds / 3 for r in runs),
        "overhead_ms_per_phase": median(1000 * r.overhead_seconds / 3 for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--settle-seconds", type=float, default=2.0, help="pause between runs (see the module docstring)"
    )
    parser.add_argument(
        "--concurrent", type=int, default=0, help="N standard runs at once instead (see the module docstring)"
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=0.05,
        help="with --concurrent: each stand-in training step sleeps this long",
    )
    parser.add_argument(
        "--database-url", default=None, help="with --concurrent: the projection's database (default: SQLite)"
    )
    parser.add_argument("--bookkeeping-concurrency", type=int, default=Settings().bookkeeping_concurrency)
    args = parser.parse_args()
    if args.concurrent:
        result = asyncio.run(
            measure_concurrent(args.concurrent, args.step_seconds, args.database_url, args.bookkeeping_concurrency)
        )
        write_result(
            "orchestration_overhead_concurrent",
            result,
            RESULTS / f"orchestration_overhead_concurrent_{result['database'].lower()}.json",
        )
    else:
        write_result("orchestration_overhead", asyncio.run(measure(args.iterations, args.repeats, args.settle_seconds)))


if __name__ == "__main__":
    configure_process_environment()
    main()
