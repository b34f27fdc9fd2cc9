"""The HTTP API's contract: status codes, clear messages, and nothing half-written on a rejected request."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from activities.context import ActivityContext
from db.models import Dataset, MLTask
from testkit.api import api_client, with_temporal
from testkit.documents import write_dataset
from testkit.servers import free_port

GOOD_ROWS = [{"question": f"What is setting {i}?", "answer": f"Setting {i} controls feature {i}."} for i in range(5)]


@pytest.fixture
def offline_settings(settings):
    """Temporal is not running: only routes that need it may say so (503)."""
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


@pytest.fixture
async def api(offline_settings):
    async with api_client(offline_settings) as client:
        yield client


def nothing_stored(settings) -> bool:
    ctx = ActivityContext.from_settings(settings)
    with ctx.sessions() as session:
        rows = session.scalar(select(func.count()).select_from(Dataset))
    return rows == 0 and ctx.store.list("datasets/") == []


async def post_file(api, name: str, content: bytes, **form):
    return await api.post("/api/v1/datasets", files={"file": (name, content)}, data={"name": "d", **form})


async def test_health(api):
    assert (await api.get("/healthz")).json() == {"status": "ok"}


async def test_upload_list_get_and_preview(api, tmp_path):
    created = await post_file(
        api, "faq.jsonl", "".join(json.dumps(r) + "\n" for r in GOOD_ROWS).encode(), domain="docs"
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (
        body["sample_count"] == 5
        and body["domain"] == "docs"
        and not body["is_optimized"]
        and body["file_format"] == "jsonl"
    )
    dataset_id = body["dataset_id"]
    assert (await api.get(f"/api/v1/datasets/{dataset_id}")).json()["name"] == "d"
    assert [d["dataset_id"] for d in (await api.get("/api/v1/datasets")).json()["items"]] == [dataset_id]
    # the preview shows the stored rows: the upload's records, each with its row id
    preview = (await api.get(f"/api/v1/datasets/{dataset_id}/preview", params={"limit": 2})).json()
    assert [{k: v for k, v in r.items() if k != "id"} for r in preview["rows"]] == GOOD_ROWS[:2]
    rows = (await api.get(f"/api/v1/datasets/{dataset_id}/versions/1/rows", params={"limit": 2})).json()["items"]
    assert [r["id"] for r in preview["rows"]] == [r["row_id"] for r in rows]


async def test_csv_and_json_uploads_are_accepted(api):
    csv = b"instruction,input,output\nSummarize,long text,short\nTranslate,hola,hello\n"
    assert (await post_file(api, "data.csv", csv)).json()["sample_count"] == 2
    chat = json.dumps(
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    ).encode()
    assert (await post_file(api, "chat.json", chat)).json()["sample_count"] == 1


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("bad.jsonl", b'{"question": "a", "answer": "b"}\n{"question": oops}\n', "line 2"),
        ("bad.txt", b"hello", "unsupported file type"),
        ("empty.jsonl", b"", "empty"),
        ("fields.jsonl", b'{"q": "a", "a": "b"}\n', "no usable rows"),
        ("latin1.csv", "question,answer\ncaf\xe9,oui\n".encode("latin-1"), "UTF-8"),
    ],
)
async def test_rejected_uploads_say_why_and_leave_nothing_behind(api, offline_settings, name, content, message):
    response = await post_file(api, name, content)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert nothing_stored(offline_settings)


async def test_an_upload_over_the_size_limit_is_413_and_leaves_nothing(offline_settings):
    small = offline_settings.model_copy(update={"max_upload_bytes": 64})
    async with api_client(small) as api:
        response = await post_file(api, "big.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in GOOD_ROWS))
    assert response.status_code == 413 and "64 byte limit" in response.json()["detail"]
    assert nothing_stored(small)


async def test_upload_without_a_name_is_422(api):
    response = await api.post("/api/v1/datasets", files={"file": ("a.jsonl", b"{}")})
    assert response.status_code == 422 and "name" in json.dumps(response.json())


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/nope",
        "/api/v1/datasets/nope/preview",
        "/api/v1/tasks/nope",
        "/api/v1/tasks/nope/executions",
        "/api/v1/tasks/nope/report",
    ],
)
async def test_unknown_ids_are_404(api, path):
    response = await api.get(path)
    assert response.status_code == 404 and "not found" in response.json()["detail"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}])
async def test_preview_limit_is_validated(api, params):
    created = (await post_file(api, "faq.jsonl", json.dumps(GOOD_ROWS[0]).encode())).json()
    assert (await api.get(f"/api/v1/datasets/{created['dataset_id']}/preview", params=params)).status_code == 422


@pytest.fixture
async def dataset_id(api, tmp_path):
    path = write_dataset(tmp_path / "faq.jsonl")
    return (
        await api.post("/api/v1/datasets", files={"file": (path.name, path.read_bytes())}, data={"name": "faq"})
    ).json()["dataset_id"]


async def test_task_creation_accepts_camel_case_and_defaults(api, dataset_id):
    response = await api.post(
        "/api/v1/tasks/continuous",
        json={
            "taskName": "t",
            "datasetId": dataset_id,
            "maxIterations": 2,
            "performanceThreshold": 0.9,
            "hyperparameters": {"learningRate": 0.001, "balanceYesNo": True},
        },
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert (
        task["status"] == "PENDING" and task["mode"] == "CONTINUOUS" and task["model_name"] == "smollm2-135m-instruct"
    )
    assert task["max_iterations"] == 2 and task["hyperparameters"] == {"learning_rate": 0.001, "balance_yes_no": True}
    assert (await api.get("/api/v1/tasks", params={"status": "PENDING"})).json()["total"] == 1
    assert (await api.get("/api/v1/tasks", params={"status": "COMPLETED"})).json()["total"] == 0


@pytest.mark.parametrize(
    "body,field",
    [
        ({"hyperparameters": {"learning_rate": -1}}, "learning_rate"),
        ({"hyperparameters": {"lora_dropout": 1.0}}, "lora_dropout"),
        ({"hyperparameters": {"max_seq_length": 8}}, "max_seq_length"),
        ({"hyperparameters": {"epochs": 0}}, "epochs"),
        ({"hyperparameters": {"balance_yes_no": "maybe"}}, "balance_yes_no"),
        ({"hyperparameters": {"warmup": 10}}, "warmup"),
        ({"status": "COMPLETED"}, "status"),
        ({"latest_score": 1.0}, "latest_score"),
        ({"task_id": "mine"}, "task_id"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"performance_threshold": 1.5}, "performance_threshold"),
        ({"task_name": ""}, "task_name"),
    ],
)
async def test_invalid_task_bodies_are_422_naming_the_field(api, dataset_id, body, field):
    response = await api.post("/api/v1/tasks/continuous", json={"task_name": "t", "dataset_id": dataset_id, **body})
    assert response.status_code == 422
    assert any(field in ".".join(map(str, error["loc"])) for error in response.json()["detail"]), response.json()


async def test_unknown_model_and_dataset_are_rejected_with_a_message(api, dataset_id, offline_settings):
    response = await api.post(
        "/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": dataset_id, "model_name": "gpt-17"}
    )
    assert (
        response.status_code == 422
        and "model_name" in response.json()["detail"]
        and "gpt-17" in response.json()["detail"]
    )
    response = await api.post("/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": "nope"})
    assert response.status_code == 404 and "dataset nope" in response.json()["detail"]
    with ActivityContext.from_settings(offline_settings).sessions() as session:
        assert session.scalar(select(func.count()).select_from(MLTask)) == 0


async def test_illegal_transitions_are_409(api, dataset_id):
    task_id = (await api.post("/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": dataset_id})).json()[
        "task_id"
    ]
    for action, message in (("resume", "not SUSPENDED"), ("pause", "it is PENDING")):
        response = await api.post(f"/api/v1/tasks/{task_id}/{action}")
        assert response.status_code == 409 and message in response.json()["detail"]
    report = await api.get(f"/api/v1/tasks/{task_id}/report")
    assert report.status_code == 404 and "no report yet" in report.json()["detail"]


async def test_temporal_unreachable_is_503_not_500(api, dataset_id):
    task_id = (await api.post("/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": dataset_id})).json()[
        "task_id"
    ]
    response = await api.post(f"/api/v1/tasks/{task_id}/start")
    assert response.status_code == 503 and "unreachable" in response.json()["detail"]


async def test_cancelling_a_task_that_never_started(temporal_env, settings, tmp_path):
    online = with_temporal(settings, temporal_env)
    async with api_client(online) as api:
        path = write_dataset(tmp_path / "faq.jsonl")
        dataset = (
            await api.post("/api/v1/datasets", files={"file": (path.name, path.read_bytes())}, data={"name": "faq"})
        ).json()
        task_id = (
            await api.post("/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": dataset["dataset_id"]})
        ).json()["task_id"]
        assert (await api.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 202
        assert (await api.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "CANCELLED"
        again = await api.post(f"/api/v1/tasks/{task_id}/cancel")
        assert again.status_code == 409 and "CANCELLED" in again.json()["detail"]
        start = await api.post(f"/api/v1/tasks/{task_id}/start")
        assert start.status_code == 409
