"""The loop's worth: on the shipped sample dataset, a continuous run that targets each round's bad cases
against the same number of iterations and training steps without targeting (plain re-training on the
cleaned data). Test-split (and feedback-split) scores per iteration for both, reported whichever way they go.

    python -m bench.loop_ablation [--iterations 3] [--max-steps 36]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import numpy as np
from temporalio.testing import WorkflowEnvironment

from activities.context import ActivityContext
from bench.common import write_result
from cli.demo import DEMO_HYPERPARAMETERS, SAMPLE_DATASET
from cli.stack import temporal_binary
from core.settings import TASK_QUEUE_WORKFLOWS, Settings, configure_process_environment
from core.status import TaskMode
from db.session import migrate
from schemas.api import ContinuousTaskCreate
from schemas.reports import EvaluationReport
from schemas.workflow_io import FineTuningResult
from services.datasets import upload_dataset
from services.tasks import create_task, workflow_input
from tests.workflows.fakes import running_workers


async def run_variant(env, ctx: ActivityContext, dataset_id: str, targeting: bool, iterations: int, max_steps: int) -> dict:
    body = ContinuousTaskCreate(task_name=f"ablation targeting={targeting}", dataset_id=dataset_id, max_iterations=iterations,
                                hyperparameters={**DEMO_HYPERPARAMETERS, "max_steps": max_steps})
    with ctx.sessions() as session:
        task = create_task(session, body, TaskMode.CONTINUOUS, "bench", None)
    handle = await env.client.start_workflow("FineTuningWorkflow", workflow_input(task, ctx.settings, targeting=targeting), id=task.id,
                                             task_queue=TASK_QUEUE_WORKFLOWS, result_type=FineTuningResult)
    result = await handle.result()
    rows = []
    for record in result.iterations:
        evaluation = ctx.read_model(record.evaluation_key, EvaluationReport)
        followup = evaluation.bad_case_followup
        rows.append({
            "iteration": record.iteration, "train_steps": record.train_steps,
            "test": evaluation.splits["test"].scores.model_dump(), "feedback": evaluation.splits["feedback"].scores.model_dump(),
            "test_by_example": {r.example_id: r.overall for r in evaluation.splits["test"].examples},
            "previous_bad_cases_improved": sum(1 for f in followup if (f.delta or 0) > 0), "previous_bad_cases": len(followup),
        })
    baseline = ctx.read_model(result.iterations[0].evaluation_key.rsplit("/iter-", 1)[0] + "/baseline.json", EvaluationReport)
    return {"targeting": targeting, "task_id": task.id, "baseline_test": baseline.splits["test"].scores.model_dump(), "iterations": rows}


async def measure(iterations: int, max_steps: int) -> dict:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary(), dev_server_log_level="error")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), model_cache=Path(".wlops/model-cache").resolve())
            migrate(settings.resolved_database_url)
            ctx = ActivityContext.from_settings(settings)
            with ctx.sessions() as session, open(SAMPLE_DATASET, "rb") as fh:
                dataset = upload_dataset(session, ctx.store, settings, stream=fh, filename=SAMPLE_DATASET.name, name="sample",
                                         domain=None, dataset_type=None, org_id="bench", created_by=None)
            async with running_workers(env.client, ctx):
                variants = [await run_variant(env, ctx, dataset.id, targeting, iterations, max_steps) for targeting in (True, False)]
    finally:
        await env.shutdown()
    final = {("targeted" if v["targeting"] else "plain"): v["iterations"][-1]["test"]["overall"] for v in variants}
    targeted, plain = (next(v for v in variants if v["targeting"] is t) for t in (True, False))
    intervals = [paired_difference(a["test_by_example"], b["test_by_example"]) for a, b in zip(targeted["iterations"], plain["iterations"])]
    for variant in variants:
        for row in variant["iterations"]:
            del row["test_by_example"]
    return {"dataset": SAMPLE_DATASET.name, "iterations": iterations, "max_steps_per_iteration": max_steps, "variants": variants,
            "final_test_overall": final, "targeting_wins": final["targeted"] > final["plain"],
            "difference": round(final["targeted"] - final["plain"], 4),
            "difference_per_iteration_95ci": intervals,
            "significant": intervals[-1]["low"] > 0 or intervals[-1]["high"] < 0}


def paired_difference(targeted: dict[str, float], plain: dict[str, float]) -> dict[str, float]:
    """Mean per-example test score difference (targeted - plain) with a 95% paired bootstrap interval."""
    from scipy.stats import bootstrap

    differences = np.array([targeted[i] - plain[i] for i in sorted(targeted)])
    if np.all(differences == differences[0]):  # identical runs (iteration 1 trains on the same data): no spread to resample
        low = high = float(differences[0])
    else:
        interval = bootstrap((differences,), np.mean, n_resamples=5000, confidence_level=0.95, random_state=0).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return {"mean": round(float(differences.mean()), 4), "low": round(low, 4), "high": round(high, 4), "examples": len(differences)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=DEMO_HYPERPARAMETERS["max_steps"])
    args = parser.parse_args()
    write_result("loop_ablation", asyncio.run(measure(args.iterations, args.max_steps)))


if __name__ == "__main__":
    configure_process_environment()
    main()
