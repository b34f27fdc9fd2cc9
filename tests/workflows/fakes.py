"""Same-named stand-ins for the phase activities, for testing orchestration only.

Bookkeeping (database projection, compensation) stays real. Each fake writes a marker object
where the real activity would write its artifact, so compensation can be checked.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.bookkeeping import BookkeepingActivities
from activities.context import ActivityContext
from activities.generation import GenerationActivities
from activities.knowledge import KnowledgeActivities
from activities.optimize import optimized_dataset_id
from core.settings import (
    TASK_QUEUE_BOOKKEEPING, TASK_QUEUE_EVALUATE, TASK_QUEUE_KNOWLEDGE, TASK_QUEUE_OPTIMIZE, TASK_QUEUE_TRAIN, TASK_QUEUE_WORKFLOWS,
)
from db.models import Dataset, MLTask
from schemas.workflow_io import EvaluateInput, EvaluateResult, OptimizeInput, OptimizeResult, ReportInput, ReportResult, TrainInput, TrainResult
from storage import keys
from storage.object_store import get_bytes, put_bytes
from workers.pools import build_workers, retraining_activities


@dataclass
class FakePhases:
    ctx: ActivityContext
    test_scores: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.8, 0.9])
    train_steps: int = 5
    train_steps_by_iteration: dict[int, int] = field(default_factory=dict)  # overrides train_steps for these iterations
    step_seconds: float = 0.0
    fail_train_attempts: int = 0  # attempts of train that raise a retryable error
    optimize_error: str | None = None  # raise a non-retryable error with this message
    calls: dict[str, list] = field(default_factory=lambda: defaultdict(list))

    @activity.defn(name="optimize_dataset")
    async def optimize_dataset(self, inp: OptimizeInput) -> OptimizeResult:
        self.calls["optimize"].append(inp)
        if self.optimize_error:
            raise ApplicationError(self.optimize_error, type="InvalidInput", non_retryable=True)
        dataset_id = optimized_dataset_id(inp.task_id, inp.iteration)
        train_key = keys.optimized_prefix(dataset_id) + "train.jsonl"
        put_bytes(self.ctx.store, train_key, b"{}\n")
        with self.ctx.sessions.begin() as session:
            session.merge(Dataset(id=dataset_id, name="fake", storage_key=train_key, file_format="jsonl", size_bytes=3, sample_count=1,
                                  org_id=inp.org_id, is_optimized=True, source_dataset_id=inp.dataset_id, task_id=inp.task_id))
        return OptimizeResult(dataset_id, train_key, inp.splits_key or keys.optimized_prefix(dataset_id) + "splits.json", {"rows_out": 1})

    @activity.defn(name="train_adapter")
    async def train_adapter(self, inp: TrainInput) -> TrainResult:
        info = activity.info()
        self.calls["train"].append((inp, info.attempt))
        if info.attempt <= self.fail_train_attempts:
            raise RuntimeError(f"simulated crash on attempt {info.attempt}")
        checkpoint = keys.model_prefix(inp.task_id, inp.iteration) + "checkpoint/step"
        step = int(get_bytes(self.ctx.store, checkpoint)) if self.ctx.store.exists(checkpoint) else 0
        resumed_from = step
        total = self.train_steps_by_iteration.get(inp.iteration, self.train_steps)
        try:
            while step < total:
                await asyncio.sleep(self.step_seconds)
                step += 1
                activity.heartbeat({"step": step, "total_steps": total, "loss": 1.0 / step})
        except asyncio.CancelledError:
            put_bytes(self.ctx.store, checkpoint, str(step).encode())  # what the real trainer does: checkpoint, then stop
            raise
        adapter_key = keys.model_prefix(inp.task_id, inp.iteration) + "adapter/"
        put_bytes(self.ctx.store, adapter_key + "adapter_model.safetensors", b"weights")
        return TrainResult(adapter_key, step, total, resumed_from, 0.5, 100, 0.1, 1000.0, adapter_key + "metrics.json")

    @activity.defn(name="evaluate_adapter")
    async def evaluate_adapter(self, inp: EvaluateInput) -> EvaluateResult:
        self.calls["evaluate"].append(inp)
        score = self.test_scores[inp.iteration - 1]
        key = keys.evaluation_prefix(inp.task_id, inp.iteration) + "evaluation.json"
        put_bytes(self.ctx.store, key, b"{}")
        return EvaluateResult(key, inp.baseline_key or keys.evaluation_prefix(inp.task_id) + "baseline.json", score, score, 0.1, "POOR", 2)

    @activity.defn(name="build_report")
    async def build_report(self, inp: ReportInput) -> ReportResult:
        self.calls["report"].append(inp)
        key = keys.evaluation_prefix(inp.task_id) + "report.json"
        put_bytes(self.ctx.store, key, b"{}")
        return ReportResult(key, key.replace(".json", ".md"), None)

    def activities(self) -> dict[str, list]:
        bookkeeping, knowledge, generation = BookkeepingActivities(self.ctx), KnowledgeActivities(self.ctx), GenerationActivities(self.ctx)
        return {
            TASK_QUEUE_WORKFLOWS: [bookkeeping.record_progress, knowledge.record_knowledge_base, generation.record_dataset],
            TASK_QUEUE_BOOKKEEPING: [bookkeeping.compensate_iteration, self.build_report, *retraining_activities(self.ctx)],
            TASK_QUEUE_OPTIMIZE: [self.optimize_dataset],
            TASK_QUEUE_TRAIN: [self.train_adapter],
            TASK_QUEUE_EVALUATE: [self.evaluate_adapter, generation.generate_dataset],
            TASK_QUEUE_KNOWLEDGE: [knowledge.build_knowledge_index],
        }


@asynccontextmanager
async def running_workers(client, ctx: ActivityContext, activities: dict[str, list] | None = None, pools: tuple[str, ...] = ("all",)):
    """The pools' workers, each on its own task queue, for the duration of the block."""
    async with AsyncExitStack() as stack:
        for pool in pools:
            for worker in build_workers(client, pool, ctx, activities):
                await stack.enter_async_context(worker)
        yield


async def wait_for_status(ctx: ActivityContext, task_id: str, *statuses: str, iteration: int | None = None, timeout: float = 30) -> MLTask:
    """Poll the database projection until the task reaches one of `statuses` (in `iteration`, when given)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with ctx.sessions() as session:
            task = session.get(MLTask, task_id)
            if task.status in statuses and iteration in (None, task.current_iteration):
                return task
        if loop.time() > deadline:
            raise TimeoutError(f"task {task_id} stayed {task.status} in iteration {task.current_iteration}, wanted {statuses} in {iteration}")
        await asyncio.sleep(0.05)
