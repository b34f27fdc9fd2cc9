"""Prometheus metrics, scraped for real: the API's `/metrics` (requests by route template and status, latencies,
tasks by status) and a worker pool's own port, where the Temporal SDK's metrics and the WLOps metrics its activities
recorded during a real run (tiny model) and a real knowledge-base build are served together."""

from __future__ import annotations

import re

import httpx

from activities.context import ActivityContext
from observability.temporal import metrics_runtime
from temporal_client import connect
from testkit.api import api_client, create_task, upload, wait_for_knowledge_base, wait_until_done, with_temporal
from testkit.documents import write_dataset, write_knowledge
from testkit.model import TINY_HYPERPARAMETERS
from testkit.phases import running_workers
from testkit.servers import free_port


def value(scraped: str, name: str, default: float | None = None, **labels: str) -> float:
    """The sample of `name` whose labels include `labels` (the first one), as a number (`default` if there is none)."""
    for line in scraped.splitlines():
        if line.startswith((name + "{", name + " ")):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.rsplit(" ", 1)[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    if default is not None:
        return default
    raise AssertionError(
        f"no {name} with {labels} in:\n" + "\n".join(line for line in scraped.splitlines() if name in line)
    )


async def test_the_api_counts_requests_by_route_template_and_tasks_by_status(settings, tmp_path):
    async with api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        await api.post("/api/v1/tasks/standard", json={"task_name": "counted", "dataset_id": dataset["dataset_id"]})
        # the counters belong to the process: count from what earlier tests left
        before = value(
            (await api.get("/metrics")).text,
            "wlops_http_requests_total",
            0,
            route="/api/v1/tasks/{task_id}",
            status="404",
        )
        for missing in ("a", "b", "c"):
            assert (await api.get(f"/api/v1/tasks/{missing}")).status_code == 404
        await api.get("/no/such/path")
        response = await api.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    scraped = response.text
    # one series per route template, never per id
    assert (
        value(
            scraped,
            "wlops_http_requests_total",
            service="api",
            method="GET",
            route="/api/v1/tasks/{task_id}",
            status="404",
        )
        == before + 3
    )
    assert (
        '/api/v1/tasks/a"' not in scraped
        and value(scraped, "wlops_http_requests_total", route="unmatched", status="404") >= 1
    )
    assert value(scraped, "wlops_http_request_duration_seconds_count", route="/api/v1/datasets", method="POST") >= 1
    assert value(scraped, "wlops_tasks", status="PENDING") >= 1 and value(scraped, "wlops_tasks", status="FAILED") == 0


async def test_a_worker_pool_serves_the_sdk_metrics_and_its_own(temporal_env, settings, tiny_model_dir, tmp_path):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    port = free_port()
    client = await connect(settings, metrics_runtime(f"127.0.0.1:{port}"))
    async with running_workers(client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        task_id = (
            await create_task(
                api,
                "standard",
                {
                    "task_name": "measured",
                    "model_name": tiny_model_dir,
                    "dataset_id": dataset["dataset_id"],
                    "hyperparameters": TINY_HYPERPARAMETERS,
                },
            )
        )["task_id"]
        assert (await api.post(f"/api/v1/tasks/{task_id}/start")).status_code == 202
        kb = (await api.post("/api/v1/knowledge-bases", json={"name": "measured"})).json()["knowledge_base_id"]
        for path in write_knowledge(tmp_path / "kb", n_topics=3):
            assert (
                await api.post(
                    f"/api/v1/knowledge-bases/{kb}/documents", files={"file": (path.name, path.read_bytes())}
                )
            ).status_code == 202
        assert (await wait_until_done(api, task_id))["status"] == "COMPLETED"
        await wait_for_knowledge_base(api, kb)
    async with httpx.AsyncClient() as http:
        scraped = (await http.get(f"http://127.0.0.1:{port}/metrics")).text

    # the SDK's own
    assert value(scraped, "temporal_workflow_completed_total", workflow_type="FineTuningWorkflow") >= 1
    assert value(scraped, "temporal_activity_execution_latency_count", activity_type="train_adapter") >= 1
    # WLOps': status changes, phase durations, training, evaluation scores, knowledge-base builds
    assert value(scraped, "wlops_task_status_changes_total", status="COMPLETED") >= 1
    for phase in ("OPTIMIZING", "TRAINING", "EVALUATING"):
        assert value(scraped, "wlops_phase_duration_seconds_count", phase=phase) >= 1
    assert value(scraped, "wlops_training_steps_total", task_queue="wlops-train") >= TINY_HYPERPARAMETERS["max_steps"]
    assert value(scraped, "wlops_training_loss") > 0 and value(scraped, "wlops_training_tokens_per_second") > 0
    assert 0 <= value(scraped, "wlops_evaluation_score", split="test", mode="closed_book") <= 1
    assert 0 <= value(scraped, "wlops_evaluation_fact_accuracy", split="test", mode="closed_book") <= 1
    assert value(scraped, "wlops_knowledge_documents_total", outcome="indexed") == 1
    assert value(scraped, "wlops_knowledge_chunks_embedded_total") >= 3


def test_a_worker_whose_metrics_port_is_taken_still_works_without_metrics(settings, caplog):
    import socket

    from workers.pools import pool_runtime

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert pool_runtime("train", settings.model_copy(update={"worker_metrics_port": port})) is None
    assert f"worker pool train serves no metrics: 127.0.0.1:{port}" in caplog.text
    assert pool_runtime("train", settings.model_copy(update={"worker_metrics_port": 0})) is None
