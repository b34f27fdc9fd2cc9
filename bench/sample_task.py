"""What the loop's benchmarks share: the sample's task on the real stack in process (a Temporal dev server, the
workers, the API over ASGI), its first version promoted to production, and a version's answers to a list of questions
at the evaluation's settings, judged by their fact checks.

`--quick` runs use the tiny random model on a subset of the sample, with shorter waits and fewer steps: a test's check
that the path works, whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from activities.context import ActivityContext
from activities.evaluate import evaluation_config
from bench.common import write_result
from cli.demo import DEMO_HYPERPARAMETERS, DEMO_KNOWLEDGE_BASE, DEMO_RAG, SAMPLE_DATASET, SAMPLE_KNOWLEDGE
from cli.stack import temporal_binary
from core.settings import Settings
from db.models import KnowledgeBase
from db.session import migrate
from facts.stats import wilson_interval
from ml.examples import record_checks, record_to_pair
from services import knowledge
from storage.object_store import get_dir
from testkit.api import (
    api_client,
    create_task,
    wait_for_gate,
    wait_for_knowledge_base,
    wait_until_done,
    with_temporal,
)
from testkit.model import TINY_HYPERPARAMETERS, build_tiny_model
from testkit.phases import running_workers
from testkit.polling import poll_until

MODEL = "ferrolink-assistant"
REAL_MODEL = "smollm2-135m-instruct"
QUICK_SETTINGS = {
    "retrain_quiet_seconds": 1,
    "retrain_poll_seconds": 0.3,
    "knowledge_settle_seconds": 0.3,
    "split_min_examples": 4,
    "generation_batch_size": 16,
    "max_new_tokens": 12,
}


@dataclass
class Setup:
    model_name: str
    hyperparameters: dict[str, Any]
    settings: dict[str, Any]
    rows: list[dict[str, Any]]
    timeout: float


def setup(data_dir: Path, rows: list[dict[str, Any]], quick: bool, max_steps: int | None) -> Setup:
    """The real model with the demo's hyperparameters, or (`quick`) the tiny random model with the quick settings."""
    steps = {"max_steps": max_steps} if max_steps else {}
    if not quick:
        hyperparameters = {**DEMO_HYPERPARAMETERS, "max_seq_length": DEMO_RAG["max_seq_length"], **steps}
        return Setup(REAL_MODEL, hyperparameters, {}, rows, timeout=3 * 3600)
    return Setup(
        str(build_tiny_model(data_dir / "tiny-model")),
        {**TINY_HYPERPARAMETERS, "max_seq_length": 320, **steps},
        QUICK_SETTINGS,
        rows,
        timeout=600,
    )


def model_label(run: Setup) -> str:
    return run.model_name if run.model_name == REAL_MODEL else "tiny random model (--quick)"


def sample_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE_DATASET.read_text().splitlines() if line.strip()]


def readable(row: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]] | None:
    """The row's question, answer and checks; None for the sample's deliberate noise that the upload leaves out."""
    try:
        question, answer = record_to_pair(row)
        return question, answer, record_checks(row) or []
    except ValueError:
        return None


async def upload_documents(api: httpx.AsyncClient, kb_id: str, documents: dict[str, bytes]) -> None:
    for name, content in documents.items():
        response = await api.post(f"/api/v1/knowledge-bases/{kb_id}/documents", files={"file": (name, content)})
        assert response.status_code == 202, response.text


async def promote(api: httpx.AsyncClient, version: int, timeout: float, bench: str) -> dict[str, Any]:
    """Ask the gate to promote `version` to production; when it refuses, force it (the result says so)."""
    asked = await api.post(f"/api/v1/models/{MODEL}/versions/{version}/promote", json={"alias": "production"})
    assert asked.status_code == 202, asked.text
    gate = await wait_for_gate(api, asked.headers["Location"], timeout=timeout)
    outcome = {"gate": gate["status"], "reason": gate["reason"], "forced": False}
    if gate["status"] != "PROMOTED":
        forced = await api.post(
            f"/api/v1/models/{MODEL}/versions/{version}/promote",
            json={"alias": "production", "force": True, "reason": f"{bench} bench: the gate said {gate['status']}"},
        )
        assert forced.json()["status"] == "PROMOTED", forced.text
        outcome["forced"] = True
    return outcome


Bench = Callable[[httpx.AsyncClient, ActivityContext, Setup, Path], Awaitable[dict[str, Any]]]


async def on_stack(env: WorkflowEnvironment, data_dir: Path, run: Setup, bench: Bench) -> dict[str, Any]:
    """`bench` with the API (signed in as its owner), the workers on the Temporal server of `env`, its files in
    `data_dir`, and `run.rows` written as the dataset to upload."""
    # the real model is de-quantized once into the checkout's cache, as the other benchmarks do
    cache = data_dir / "model-cache" if run.model_name != REAL_MODEL else Path(".wlops/model-cache").resolve()
    # one login drives the whole run, longer than an access token's default 15 minutes
    settings = with_temporal(
        Settings(data_dir=data_dir / "wlops", model_cache=cache, access_token_minutes=240), env, **run.settings
    )
    migrate(settings.resolved_database_url)
    ctx = ActivityContext.from_settings(settings)
    dataset_path = data_dir / SAMPLE_DATASET.name
    dataset_path.write_text("".join(json.dumps(row) + "\n" for row in run.rows))
    async with running_workers(env.client, ctx), api_client(settings, "bench", "bench") as api:
        return await bench(api, ctx, run, dataset_path)


@dataclass
class FirstVersion:
    kb_id: str
    dataset_id: str
    task: dict[str, Any]  # the finished task, as the API shows it
    promotion: dict[str, Any]  # what the gate said of version 1 (and whether it was forced)
    documents: dict[str, bytes]  # the knowledge base's documents, by name


async def first_version(
    api: httpx.AsyncClient, run: Setup, dataset_path: Path, *, task_name: str, retrain_on_change: bool, bench: str
) -> FirstVersion:
    """The sample's knowledge base, the dataset at `dataset_path`, a standard task with both at the demo's retrieval
    settings, registered as version 1 of MODEL and promoted to production."""
    kb_id = (await api.post("/api/v1/knowledge-bases", json=DEMO_KNOWLEDGE_BASE)).json()["knowledge_base_id"]
    documents = {p.name: p.read_bytes() for p in sorted(SAMPLE_KNOWLEDGE.iterdir()) if p.is_file()}
    await upload_documents(api, kb_id, documents)
    await wait_for_knowledge_base(api, kb_id, version=1, timeout=run.timeout)
    uploaded = await api.post(
        "/api/v1/datasets",
        files={"file": (dataset_path.name, dataset_path.read_bytes())},
        data={"name": "FerroLink support FAQ"},
    )
    assert uploaded.status_code == 201, uploaded.text
    dataset_id = uploaded.json()["dataset_id"]
    task = await create_task(
        api,
        "standard",
        {
            "task_name": task_name,
            "model_name": run.model_name,
            "dataset_id": dataset_id,
            "hyperparameters": run.hyperparameters,
            "knowledge_base_id": kb_id,
            "retrieval_top_k": DEMO_RAG["retrieval_top_k"],
            "context_statements": DEMO_RAG["context_statements"],
            "retrain_on_change": retrain_on_change,
            "register_as": MODEL,
        },
    )
    await api.post(f"/api/v1/tasks/{task['task_id']}/start")
    task = await wait_until_done(api, task["task_id"], timeout=run.timeout)
    assert task["status"] == "COMPLETED", task["error"]
    promotion = await promote(api, 1, run.timeout, bench)
    return FirstVersion(kb_id, dataset_id, task, promotion, documents)


async def gate_of(api: httpx.AsyncClient, version: int, timeout: float) -> dict[str, Any]:
    """The gate that the version went before by itself, once it has decided."""

    async def gates() -> list[dict]:
        items = (await api.get(f"/api/v1/models/{MODEL}/gates")).json()["items"]
        return [g for g in items if g["candidate_version"] == version]

    found = await poll_until(gates, timeout=timeout, interval=1, what=f"a gate for version {version}")
    return await wait_for_gate(api, f"/api/v1/models/{MODEL}/gates/{found[0]['gate_id']}", timeout=timeout)


async def adapter_keys(api: httpx.AsyncClient) -> dict[int, str]:
    """Each version of MODEL's adapter, by version number."""
    items = (await api.get(f"/api/v1/models/{MODEL}/versions")).json()["items"]
    return {v["version"]: v["adapter_key"] for v in items}


def passages(ctx: ActivityContext, kb_id: str, questions: list[str]) -> list[list[str]]:
    """The demo's passages from the knowledge base's live index for each question, as serving gives a version of the
    demo's task: the top-k chunks, cut to the statements nearest the question (`DEMO_RAG`)."""
    from knowledge.embeddings import embed
    from ml.focused_context import focus_passages

    cache = knowledge.IndexCache(ctx.store)
    vectors = embed(questions)  # once: to search, then to cut
    with ctx.sessions() as session:
        kb = session.get_one(KnowledgeBase, kb_id)
        found = [
            [
                h.chunk.text
                for h in knowledge.search(session, cache, kb, question, DEMO_RAG["retrieval_top_k"], vector[None, :])
            ]
            for question, vector in zip(questions, vectors, strict=True)
        ]
    return focus_passages(questions, found, embed, DEMO_RAG["context_statements"], vectors)


def answers(
    ctx: ActivityContext, model_name: str, adapter_key: str, questions: list[str], contexts: list[list[str]] | None
) -> list[str]:
    """Greedy answers of the base model with the adapter at `adapter_key`, with `contexts` or closed book, at the
    evaluation's settings."""
    from ml.base_model import load_model_and_tokenizer, with_adapter
    from ml.evaluator import generate_answers

    config = evaluation_config(ctx.settings)
    model, tokenizer = load_model_and_tokenizer(model_name, ctx.settings.model_cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tuned = with_adapter(model, get_dir(ctx.store, adapter_key, Path(tmp) / "adapter"), merge=True)
    return generate_answers(tuned, tokenizer, questions, config.batch_size, config.max_new_tokens, contexts=contexts)


def share(right: list[bool | None]) -> dict[str, Any]:
    """How many of the judged answers are right, their share and its 95% Wilson interval."""
    judged = [r for r in right if r is not None]
    n_right = sum(1 for r in judged if r)
    low, high = wilson_interval(n_right, len(judged))
    return {
        "right": n_right,
        "of": len(judged),
        "share": round(n_right / len(judged), 4) if judged else None,
        "ci95": [round(low, 4), round(high, 4)],
    }


def minutes(since: datetime, until: str | datetime) -> float:
    moment = datetime.fromisoformat(until) if isinstance(until, str) else until
    return round((moment - since).total_seconds() / 60, 2)


RunBench = Callable[[WorkflowEnvironment, Path, bool, int | None], Awaitable[dict[str, Any]]]


async def on_dev_server(run_bench: RunBench, quick: bool, max_steps: int | None) -> dict[str, Any]:
    """`run_bench` on a new Temporal dev server, its files in a temporary folder."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return await run_bench(env, Path(tmp), quick, max_steps)
    finally:
        await env.shutdown()


def run_loop_bench(
    name: str,
    doc: str | None,
    run_bench: Callable[..., Awaitable[dict[str, Any]]],
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """A loop benchmark's command line (`--max-steps`, `--quick`, `--out`, and the bench's own `options`, passed to
    `run_bench` by name): runs it and writes its result."""
    parser = argparse.ArgumentParser(description=(doc or name).split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=None, help="training steps per task (default: the demo's)")
    parser.add_argument("--quick", action="store_true", help="the tiny random model on a subset: the path, not figures")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where to write (default: bench/results/{name}.json; with --quick, a file in the temp folder, so that "
        "the tiny model's figures never replace the measured ones)",
    )
    if options:
        options(parser)
    args = parser.parse_args()
    out = args.out or (Path(tempfile.gettempdir()) / f"{name}_quick.json" if args.quick else None)
    own = {k: v for k, v in vars(args).items() if k not in ("max_steps", "quick", "out")}
    write_result(name, asyncio.run(on_dev_server(functools.partial(run_bench, **own), args.quick, args.max_steps)), out)
