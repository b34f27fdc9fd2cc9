"""Same-named stand-ins for the phase activities, for testing orchestration only.

Bookkeeping (database projection, compensation) stays real. Each fake writes a marker object
where the real activity would write its artifact, so compensation can be checked.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext
from db.models import Dataset, MLTask
from ml.promotion import BASE, CANDIDATE, CURRENT, SetScores, figures
from schemas.reports import CLOSED_BOOK, EvaluationReport, Headline, Scores, SplitResult, TrainLoss
from schemas.workflow_io import (
    EvaluateInput,
    EvaluateResult,
    GateEvaluateInput,
    GateEvaluateResult,
    OptimizeInput,
    OptimizeResult,
    ReportInput,
    ReportResult,
    TrainInput,
    TrainResult,
)
from storage import keys
from storage.keys import optimized_dataset_id
from storage.object_store import get_bytes, put_bytes
from testkit.factories import task_row
from testkit.polling import poll_until
from workers.pools import activities_by_queue, build_workers


@dataclass
class FakePhases:
    ctx: ActivityContext
    test_scores: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.8, 0.9])
    feedback_accuracies: list[float] | None = (
        None  # each iteration's feedback share of right answers (None: no fact checks)
    )
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
            session.merge(
                Dataset(
                    id=dataset_id,
                    name="fake",
                    storage_key=train_key,
                    file_format="jsonl",
                    size_bytes=3,
                    sample_count=1,
                    org_id=inp.org_id,
                    is_optimized=True,
                    source_dataset_id=inp.dataset_id,
                    task_id=inp.task_id,
                )
            )
        return OptimizeResult(
            dataset_id, train_key, inp.splits_key or keys.optimized_prefix(dataset_id) + "splits.json", {"rows_out": 1}
        )

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
            # what the real trainer does: checkpoint, then stop
            put_bytes(self.ctx.store, checkpoint, str(step).encode())
            raise
        adapter_key = keys.model_prefix(inp.task_id, inp.iteration) + "adapter/"
        put_bytes(self.ctx.store, adapter_key + "adapter_model.safetensors", b"weights")
        return TrainResult(adapter_key, step, total, resumed_from, 0.5, 100, 0.1, 1000.0, adapter_key + "metrics.json")

    @activity.defn(name="evaluate_adapter")
    async def evaluate_adapter(self, inp: EvaluateInput) -> EvaluateResult:
        self.calls["evaluate"].append(inp)
        score = self.test_scores[inp.iteration - 1]
        key = keys.evaluation_prefix(inp.task_id, inp.iteration) + "evaluation.json"
        self.ctx.write_model(key, fake_evaluation(inp.iteration, score))
        accuracy = self.feedback_accuracies[inp.iteration - 1] if self.feedback_accuracies else None
        return EvaluateResult(
            key,
            inp.baseline_key or keys.evaluation_prefix(inp.task_id) + "baseline.json",
            score,
            score,
            0.1,
            "POOR",
            2,
            feedback_accuracy=accuracy,
        )

    @activity.defn(name="build_report")
    async def build_report(self, inp: ReportInput) -> ReportResult:
        self.calls["report"].append(inp)
        key = keys.evaluation_prefix(inp.task_id) + "report.json"
        put_bytes(self.ctx.store, key, b"{}")
        return ReportResult(key, key.replace(".json", ".md"), None)

    def activities(self) -> dict[str, list]:
        """The real activities of every queue, with the four phases replaced by these fakes (matched by activity
        name)."""
        fakes = {
            activity._Definition.must_from_callable(f).name: f
            for f in (self.optimize_dataset, self.train_adapter, self.evaluate_adapter, self.build_report)
        }
        return {
            queue: [fakes.get(activity._Definition.must_from_callable(f).name, f) for f in functions]
            for queue, functions in activities_by_queue(self.ctx).items()
        }


def fake_evaluation(iteration: int, score: float) -> EvaluationReport:
    """A valid evaluation report with `score` on both held-out splits (no examples behind it)."""

    def split(name: str) -> SplitResult:
        return SplitResult(
            split=name,
            size=0,
            scores=Scores(exact_match=0, token_f1=score, bleu=0, rouge_l=0, overall=score),
            examples=[],
        )

    return EvaluationReport(
        iteration=iteration,
        headline=Headline(score=score, grade="POOR"),
        modes={CLOSED_BOOK: {"feedback": split("feedback"), "test": split("test")}},
        train_loss=TrainLoss(mean=None),
        bad_cases=[],
        suggestions=[],
    )


@dataclass
class FakeGateEvaluation:
    """The gate's evaluation replaced by fixed per-question scores for each adapter (None: the base model)."""

    scores: dict[str | None, float]
    questions: int = 10
    error: str | None = None  # raise a non-retryable error with this message
    calls: list = field(default_factory=list)

    @activity.defn(name="evaluate_for_promotion")
    async def evaluate_for_promotion(self, inp: GateEvaluateInput) -> GateEvaluateResult:
        self.calls.append(inp)
        if self.error:
            raise ApplicationError(self.error, type="InvalidInput", non_retryable=True)
        adapters = {
            CANDIDATE: inp.candidate.adapter_key,
            **({CURRENT: inp.current.adapter_key} if inp.current else {}),
            BASE: None,
        }
        sets = [
            SetScores(
                s.name, s.splits_key, {label: [self.scores[key]] * self.questions for label, key in adapters.items()}
            )
            for s in inp.test_sets
        ]
        return GateEvaluateResult(figures(sets, inp.mode, inp.margin))

    def replace_in(self, activities: dict[str, list]) -> dict[str, list]:
        return {
            queue: [
                self.evaluate_for_promotion
                if activity._Definition.must_from_callable(f).name == "evaluate_for_promotion"
                else f
                for f in functions
            ]
            for queue, functions in activities.items()
        }


@asynccontextmanager
async def running_workers(
    client: Client, ctx: ActivityContext, activities: dict[str, list] | None = None, pools: tuple[str, ...] = ("all",)
) -> AsyncIterator[None]:
    """The pools' workers, each on its own task queue, for the duration of the block."""
    async with AsyncExitStack() as stack:
        for pool in pools:
            for worker in build_workers(client, pool, ctx, activities):
                await stack.enter_async_context(worker)
        yield


async def wait_for_status(
    ctx: ActivityContext, task_id: str, *statuses: str, iteration: int | None = None, timeout: float = 30
) -> MLTask:
    """Poll the database projection until the task reaches one of `statuses` (in `iteration`, when given)."""

    return await poll_until(
        lambda: task_row(ctx, task_id),
        lambda t: t.status in statuses and iteration in (None, t.current_iteration),
        timeout=timeout,
        interval=0.05,
        what=f"task {task_id} in {statuses} (iteration {iteration})",
    )
