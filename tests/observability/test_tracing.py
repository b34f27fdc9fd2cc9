"""One start request, traced: the HTTP span of `POST /tasks/{id}/start` is the ancestor of the workflow's spans and of
every activity span of the run (across the Temporal server, through its headers), each activity span names the task,
iteration, organization and phase, the database calls of an activity are its children, and its logs carry its trace."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from activities.context import ActivityContext
from observability.logs import ContextFilter
from observability.tracing import chosen_exporter, client_instrumentors, configure_tracing, instrument_clients
from temporal_client import connect
from testkit.api import api_client, upload, wait_until_done, with_temporal
from testkit.documents import write_dataset
from testkit.phases import FakePhases, running_workers


class WhileRecording(SimpleSpanProcessor):
    """Exports only while a test records: OpenTelemetry allows one tracer provider per process, set once."""

    active = False

    def on_end(self, span) -> None:
        if self.active:
            super().on_end(span)


@pytest.fixture(scope="session")
def recorder() -> tuple[InMemorySpanExporter, WhileRecording]:
    exporter = InMemorySpanExporter()
    processor = WhileRecording(exporter)
    configure_tracing("test", processor=processor)
    return exporter, processor


@pytest.fixture
def spans(recorder):
    """Every span this process finishes during the test, with the database and storage clients instrumented
    meanwhile."""
    exporter, processor = recorder
    instrument_clients()
    exporter.clear()
    processor.active = True
    yield exporter
    processor.active = False
    for instrumentor in client_instrumentors():
        instrumentor.uninstrument()


def test_tracing_is_off_unless_the_standard_variables_ask_for_it():
    assert chosen_exporter({}) is None
    assert chosen_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == "otlp"
    assert chosen_exporter({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert chosen_exporter({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) is None
    assert (
        chosen_exporter({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
        is None
    )


async def test_the_activity_spans_of_a_run_descend_from_the_request_that_started_it(
    spans, temporal_env, settings, tmp_path, caplog
):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    caplog.handler.addFilter(ContextFilter("test"))
    caplog.set_level(logging.INFO)
    client = await connect(settings)  # with the tracing interceptor, as every process connects
    async with running_workers(client, ctx, FakePhases(ctx).activities()), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        task_id = (
            await api.post("/api/v1/tasks/standard", json={"task_name": "traced", "dataset_id": dataset["dataset_id"]})
        ).json()["task_id"]
        assert (await api.post(f"/api/v1/tasks/{task_id}/start")).status_code == 202
        assert (await wait_until_done(api, task_id, timeout=60))["status"] == "COMPLETED"

    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}

    def ancestors(span):
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            yield span

    start = [s for s in finished if s.name == "POST /api/v1/tasks/{task_id}/start" and s.kind.name == "SERVER"]
    assert len(start) == 1, sorted({s.name for s in finished})
    http = start[0]
    run = [s for s in finished if s.context.trace_id == http.context.trace_id]
    names = {s.name for s in run}
    assert {"StartWorkflow:FineTuningWorkflow", "RunWorkflow:FineTuningWorkflow"} <= names, names
    activities = [s for s in run if s.name.startswith("RunActivity:")]
    assert {s.name.split(":")[1] for s in activities} >= {
        "optimize_dataset",
        "train_adapter",
        "evaluate_adapter",
        "build_report",
        "register_final_adapter",
    }, names
    for span in activities:
        assert http in ancestors(span), f"{span.name} does not descend from the start request"
        assert span.attributes["wlops.task_id"] == task_id and span.attributes["wlops.phase"] == span.name.split(":")[1]
        assert span.attributes["wlops.org_id"] == dataset["org_id"]
    assert {
        s.attributes.get("wlops.iteration")
        for s in activities
        if s.name in ("RunActivity:train_adapter", "RunActivity:evaluate_adapter")
    } == {1}

    # the registering activity's database queries are its descendants (the sqlite3 driver's instrumentation)
    report = next(s for s in activities if s.name == "RunActivity:register_final_adapter")
    queries = [
        s for s in run if s.attributes.get("db.system") == "sqlite" or s.attributes.get("db.system.name") == "sqlite"
    ]
    assert any(report in ancestors(q) for q in queries), sorted({s.name for s in run})

    # an activity's log records carry the task's context and the trace they belong to
    records = [
        r
        for r in caplog.records
        if getattr(r, "task_id", None) == task_id and getattr(r, "phase", None) == "register_final_adapter"
    ]
    assert records and all(
        r.trace_id == format(http.context.trace_id, "032x") and r.org_id == dataset["org_id"] for r in records
    )


def test_object_storage_requests_are_spans_of_the_activity_that_makes_them(spans, s3_endpoint, tmp_path):
    """The MinIO client speaks HTTP through urllib3, whose instrumentation makes each request a child span."""
    from opentelemetry import trace

    from core.settings import Settings
    from storage.object_store import get_bytes, object_store_from_settings, put_bytes

    store = object_store_from_settings(
        Settings(
            data_dir=tmp_path,
            s3_endpoint=s3_endpoint,
            s3_access_key="test",
            s3_secret_key="test",
            s3_bucket="wlops-traced",
        )
    )
    with trace.get_tracer("test").start_as_current_span("RunActivity:train_adapter") as activity_span:
        put_bytes(store, "models/t/iter-1/adapter/config.json", b"{}")
        assert get_bytes(store, "models/t/iter-1/adapter/config.json") == b"{}"
    requests = [
        s
        for s in spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == activity_span.get_span_context().span_id
    ]
    methods = [s.attributes.get("http.request.method") or s.attributes.get("http.method") for s in requests]
    assert "PUT" in methods and "GET" in methods, [(s.name, dict(s.attributes)) for s in requests]
