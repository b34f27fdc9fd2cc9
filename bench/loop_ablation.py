"""The loop's worth, on the shipped sample dataset with its fact sheet as the knowledge base, at equal training steps
per iteration:

1. `targeting_closed_book`: today's targeting with no knowledge base (nearest training examples up-weighted, rewrites);
2. `grounded`: with the knowledge base, each feedback bad case's retrieved chunks generate new validated examples;
3. `random_chunks`: with the knowledge base, the same number of generated examples, from random chunks;
4. `retrieval_only`: the base model with retrieval, no fine-tuning (the baseline of variants 2 and 3).

Test-split scores per iteration in both modes, paired bootstrap intervals of grounded - random per iteration, and
the product's three claims, reported whichever way they come out. The earlier comparison (targeting against plain
re-training, closed book) runs with `--variants targeting_closed_book plain_closed_book`.

    python -m bench.loop_ablation [--iterations 3] [--max-steps 30] [--variants ...]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from temporalio.testing import WorkflowEnvironment

from activities.context import ActivityContext
from bench.common import write_result
from cli.demo import DEMO_HYPERPARAMETERS, DEMO_KNOWLEDGE_BASE, DEMO_RAG, SAMPLE_DATASET, SAMPLE_KNOWLEDGE
from cli.stack import temporal_binary
from core.settings import TASK_QUEUE_WORKFLOWS, Settings, configure_process_environment
from core.status import TaskMode
from db.models import Dataset
from db.session import migrate
from schemas.api import ContinuousTaskCreate, KnowledgeBaseCreate
from schemas.reports import CLOSED_BOOK, RAG, EvaluationReport
from services import knowledge
from services.datasets import upload_dataset
from services.tasks import create_task, workflow_input
from temporal_client.workflows import FineTuningWorkflow
from testkit.knowledge import wait_for_kb
from testkit.phases import running_workers

VARIANTS = {  # name -> (uses the knowledge base, targeting, targeting source)
    "targeting_closed_book": (False, True, "bad_cases"),
    "plain_closed_book": (False, False, "bad_cases"),
    "grounded": (True, True, "bad_cases"),
    "random_chunks": (True, True, "random_chunks"),
}
DEFAULT_VARIANTS = ("targeting_closed_book", "grounded", "random_chunks")
TARGET_SCORE = 0.45


async def run_variant(
    env, ctx: ActivityContext, name: str, dataset_id: str, kb_id: str, iterations: int, max_steps: int
) -> dict:
    with_kb, targeting, source = VARIANTS[name]
    hyperparameters = {
        **DEMO_HYPERPARAMETERS,
        "max_steps": max_steps,
        **({"max_seq_length": DEMO_RAG["max_seq_length"]} if with_kb else {}),
    }
    body = ContinuousTaskCreate(
        task_name=f"ablation {name}",
        dataset_id=dataset_id,
        max_iterations=iterations,
        hyperparameters=hyperparameters,
        knowledge_base_id=kb_id if with_kb else None,
        retrieval_top_k=DEMO_RAG["retrieval_top_k"],
    )
    with ctx.sessions() as session:
        task = create_task(session, body, TaskMode.CONTINUOUS, "bench", None)
    inp = workflow_input(task, ctx.settings, targeting=targeting)
    inp.targeting_source = source
    started = time.perf_counter()
    result = await (
        await env.client.start_workflow(FineTuningWorkflow.run, inp, id=task.id, task_queue=TASK_QUEUE_WORKFLOWS)
    ).result()
    rows = []
    for record in result.iterations:
        evaluation = ctx.read_model(record.evaluation_key, EvaluationReport)
        followup = evaluation.bad_case_followup
        with ctx.sessions() as session:
            log = session.get(Dataset, record.dataset_id).optimization_log or {}
        rows.append(
            {
                "iteration": record.iteration,
                "train_steps": record.train_steps,
                "mode": evaluation.headline.mode,
                "test": {mode: evaluation.score("test", mode) for mode in evaluation.modes},
                "feedback": {mode: evaluation.score("feedback", mode) for mode in evaluation.modes},
                "test_by_example": {
                    mode: {r.example_id: r.overall for r in results["test"].examples}
                    for mode, results in evaluation.modes.items()
                },
                "previous_bad_cases_improved": sum(1 for f in followup if (f.delta or 0) > 0),
                "previous_bad_cases": len(followup),
                "generated_examples": (log.get("grounded") or {}).get("grounded_added"),
                "rewrites_added": log.get("added") if not with_kb else None,
                "retrieval_test": evaluation.retrieval["test"].model_dump() if "test" in evaluation.retrieval else None,
            }
        )
    baseline = ctx.read_model(
        result.iterations[0].evaluation_key.rsplit("/iter-", 1)[0] + "/baseline.json", EvaluationReport
    )
    return {
        "variant": name,
        "knowledge_base": with_kb,
        "targeting": targeting,
        "targeting_source": source,
        "task_id": task.id,
        "seconds": round(time.perf_counter() - started),
        "baseline_test": {mode: baseline.score("test", mode) for mode in baseline.modes},
        "baseline_test_by_example": {
            mode: {r.example_id: r.overall for r in results["test"].examples}
            for mode, results in baseline.modes.items()
        },
        "iterations": rows,
    }


async def sample_knowledge_base(env, ctx: ActivityContext) -> str:
    async def temporal():
        return env.client

    with ctx.sessions() as session:
        body = KnowledgeBaseCreate.model_validate(DEMO_KNOWLEDGE_BASE)  # what the demo posts to the API
        kb = knowledge.create_knowledge_base(
            session,
            ctx.settings,
            name=body.name,
            description=body.description,
            org_id="bench",
            created_by=None,
            chunk_tokens=body.chunk_tokens,
            chunk_overlap_tokens=body.chunk_overlap_tokens,
        )
        for path in sorted(p for p in SAMPLE_KNOWLEDGE.iterdir() if p.is_file()):
            upload = knowledge.store_document(
                session,
                ctx.store,
                ctx.settings,
                kb,
                stream=io.BytesIO(path.read_bytes()),
                filename=path.name,
                created_by=None,
            )
            await knowledge.request_build(temporal, ctx.settings, kb, [upload.document.id])
            knowledge.keep_upload(ctx.store, upload)
    await wait_for_kb(ctx, kb.id, "READY", version=1, timeout=3600)
    return kb.id


async def measure(iterations: int, max_steps: int, names: list[str]) -> dict:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp), model_cache=Path(".wlops/model-cache").resolve(), knowledge_settle_seconds=0.5
            )
            migrate(settings.resolved_database_url)
            ctx = ActivityContext.from_settings(settings)
            with ctx.sessions() as session, open(SAMPLE_DATASET, "rb") as fh:
                dataset = upload_dataset(
                    session,
                    ctx.store,
                    settings,
                    stream=fh,
                    filename=SAMPLE_DATASET.name,
                    name="sample",
                    domain=None,
                    dataset_type=None,
                    org_id="bench",
                    created_by=None,
                )
            async with running_workers(env.client, ctx):
                kb_id = await sample_knowledge_base(env, ctx)
                variants = {
                    name: await run_variant(env, ctx, name, dataset.id, kb_id, iterations, max_steps) for name in names
                }
    finally:
        await env.shutdown()
    return summarize(variants, iterations, max_steps)


def summarize(variants: dict[str, dict], iterations: int, max_steps: int) -> dict:
    comparisons, claims = {}, {}
    if "grounded" in variants and "random_chunks" in variants:
        grounded, control = variants["grounded"], variants["random_chunks"]
        comparisons["grounded_minus_random_chunks_test_rag"] = [
            {"iteration": a["iteration"], **paired_difference(a["test_by_example"][RAG], b["test_by_example"][RAG])}
            for a, b in zip(grounded["iterations"], control["iterations"], strict=True)
        ]
        last = comparisons["grounded_minus_random_chunks_test_rag"][-1]
        claims["grounded_beats_untargeted_generation"] = {
            "iteration": last["iteration"],
            "difference": last["mean"],
            "ci95": [last["low"], last["high"]],
            "holds": last["low"] > 0,
        }
    if "grounded" in variants:
        grounded = variants["grounded"]
        best = max(it["test"][RAG] for it in grounded["iterations"])
        claims["tuned_with_retrieval_reaches_0_45"] = {
            "best_test_rag": best,
            "target": TARGET_SCORE,
            "holds": best >= TARGET_SCORE,
        }
        rounds = [
            {
                "iteration": it["iteration"],
                "improved": it["previous_bad_cases_improved"],
                "of": it["previous_bad_cases"],
            }
            for it in grounded["iterations"][1:]
        ]
        claims["each_round_improves_most_bad_cases"] = {
            "rounds": rounds,
            "holds": bool(rounds) and all(r["improved"] * 2 > r["of"] for r in rounds),
        }
        claims["retrieval_only_test"] = grounded["baseline_test"].get(RAG)
    if "targeting_closed_book" in variants and "plain_closed_book" in variants:
        comparisons["targeting_minus_plain_test_closed_book"] = [
            {
                "iteration": a["iteration"],
                **paired_difference(a["test_by_example"][CLOSED_BOOK], b["test_by_example"][CLOSED_BOOK]),
            }
            for a, b in zip(
                variants["targeting_closed_book"]["iterations"],
                variants["plain_closed_book"]["iterations"],
                strict=True,
            )
        ]
    for variant in variants.values():
        variant.pop("baseline_test_by_example")
        for row in variant["iterations"]:
            row.pop("test_by_example")
    table = {
        name: {"baseline": v["baseline_test"], **{f"iteration_{it['iteration']}": it["test"] for it in v["iterations"]}}
        for name, v in variants.items()
    }
    return {
        "dataset": SAMPLE_DATASET.name,
        "knowledge_base": str(SAMPLE_KNOWLEDGE.relative_to(SAMPLE_KNOWLEDGE.parents[2])),
        "iterations": iterations,
        "max_steps_per_iteration": max_steps,
        "test_scores": table,
        "comparisons": comparisons,
        "claims": claims,
        "variants": variants,
    }


def paired_difference(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    """Mean per-example test score difference (first - second) with a 95% paired bootstrap interval."""
    from scipy.stats import bootstrap

    differences = np.array([first[i] - second[i] for i in sorted(first)])
    if np.all(differences == differences[0]):  # identical runs (the same training data): no spread to resample
        low = high = float(differences[0])
    else:
        interval = bootstrap(
            (differences,), np.mean, n_resamples=5000, confidence_level=0.95, random_state=0
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return {
        "mean": round(float(differences.mean()), 4),
        "low": round(low, 4),
        "high": round(high, 4),
        "examples": len(differences),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument(
        "--max-steps", type=int, default=30, help="training steps per iteration (the measured results used 30)"
    )
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(DEFAULT_VARIANTS))
    args = parser.parse_args()
    write_result("loop_ablation", asyncio.run(measure(args.iterations, args.max_steps, args.variants)))


if __name__ == "__main__":
    configure_process_environment()
    main()
