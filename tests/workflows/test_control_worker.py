"""The control worker processes at most WLOPS_WORKFLOW_TASK_CONCURRENCY workflow tasks at once (real Temporal
server): runs started together take turns instead of sharing the interpreter until all of them are late
(bench/concurrent_runs). The setting's minimum is 2: with one slot the worker's one poll serves either its sticky
queue or the shared one, and a run's next workflow task can sit on the other for the sticky queue's 10 s timeout (4
fake runs took 47 s instead of 2)."""

from __future__ import annotations

import asyncio

from activities.context import ActivityContext
from testkit.factories import make_task
from testkit.histories import workflow_runs
from testkit.phases import FakePhases, running_workers
from testkit.workflows import start


def most_at_once(intervals: list[tuple]) -> int:
    """The largest number of intervals open at the same moment (one that ends as another starts does not overlap it)."""
    edges = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda edge: (edge[0], edge[1]),
    )
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def test_most_at_once():
    assert most_at_once([(1, 3), (3, 4), (2, 5)]) == 2 and most_at_once([(1, 2), (2, 3)]) == 1 and most_at_once([]) == 0


async def test_runs_started_together_take_turns_on_the_control_worker(temporal_env, settings):
    ctx = ActivityContext.from_settings(settings.model_copy(update={"workflow_task_concurrency": 2}))
    async with running_workers(temporal_env.client, ctx, FakePhases(ctx).activities()):
        tasks = [make_task(ctx) for _ in range(6)]
        handles = await asyncio.gather(*(start(temporal_env.client, task, ctx.settings) for task in tasks))
        await asyncio.gather(*(handle.result() for handle in handles))
    intervals = [
        (t.started, t.closed)
        for task in tasks
        for run in await workflow_runs(temporal_env.client, task.id)
        for t in run.workflow_tasks
    ]
    assert len(intervals) >= 6 * 5
    assert most_at_once(intervals) == 2
