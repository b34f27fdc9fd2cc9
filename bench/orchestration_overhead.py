"""Orchestration overhead per phase on the embedded Temporal server: a run's wall time minus the time spent
inside its phase activities, divided by the number of phases. The phases are instant stand-ins (the same
ones the orchestration tests use); bookkeeping (the database projection) is real and counts as overhead.

    python -m bench.orchestration_overhead [--iterations 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from activities.context import ActivityContext
from api.services.tasks import workflow_input
from bench.common import write_result
from cli.stack import temporal_binary
from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from core.status import TaskMode
from schemas.workflow_io import FineTuningResult
from tests.factories import make_task
from tests.workflows.fakes import FakePhases, running_workers

PHASE_ACTIVITIES = ("optimize_dataset", "train_adapter", "evaluate_adapter", "build_report")


class TimedPhases(FakePhases):
    """The stand-in phases, timing themselves from the worker's side."""

    def timed(self, fn):
        async def wrapper(inp):
            started = time.perf_counter()
            try:
                return await fn(inp)
            finally:
                self.inside.append(time.perf_counter() - started)

        wrapper.__name__ = fn.__name__
        return activity.defn(name=activity._Definition.from_callable(fn).name)(wrapper)


async def measure(iterations: int, repeats: int) -> dict:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary(), dev_server_log_level="error")
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = ActivityContext.from_settings(Settings(data_dir=Path(tmp)))
            phases = TimedPhases(ctx, train_steps=0)
            phases.inside = []
            activities = phases.activities()
            activities = {queue: [phases.timed(a) if activity._Definition.from_callable(a).name in PHASE_ACTIVITIES else a for a in acts]
                          for queue, acts in activities.items()}
            async with running_workers(env.client, ctx, activities):
                for mode, n in [(TaskMode.STANDARD, 1)] * repeats + [(TaskMode.CONTINUOUS, iterations)] * repeats:
                    task = make_task(ctx, mode=mode, max_iterations=n)
                    phases.inside.clear()
                    started = time.perf_counter()
                    await (await env.client.start_workflow("FineTuningWorkflow", workflow_input(task, ctx.settings), id=task.id,
                                                           task_queue=TASK_QUEUE_WORKFLOWS, result_type=FineTuningResult)).result()
                    wall = time.perf_counter() - started
                    inside = sum(phases.inside)
                    runs.append({"mode": mode.value, "iterations": n, "phases": 3 * n, "wall_seconds": round(wall, 3),
                                 "inside_activities_seconds": round(inside, 4), "overhead_ms_per_phase": round(1000 * (wall - inside) / (3 * n), 1)})
    finally:
        await env.shutdown()
    per_phase = [r["overhead_ms_per_phase"] for r in runs[1:]]  # the first run pays worker warm-up
    return {"runs": runs, "median_overhead_ms_per_phase": statistics.median(per_phase), "max_overhead_ms_per_phase": max(per_phase),
            "target_ms_per_phase": 100, "meets_target": statistics.median(per_phase) < 100,
            "note": "overhead includes the database projection (a bookkeeping activity per transition) and, for continuous runs, continue-as-new"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    write_result("orchestration_overhead", asyncio.run(measure(args.iterations, args.repeats)))


if __name__ == "__main__":
    main()
