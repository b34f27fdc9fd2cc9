"""Dataset versions through the HTTP API, on the real database and object store: a new upload and annotations each
make an immutable version with who and why; diffs by row id; rows for review with their checks; downloads in three
formats; a task pins the version it was made on and its data optimization reads that version, not the head; bad
edits are 4xx naming the row and field, with nothing written."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.context import ActivityContext
from activities.optimize import OptimizeActivities
from core.status import TaskMode
from db.models import DatasetVersion
from schemas.api import StandardTaskCreate
from schemas.workflow_io import OptimizeInput
from services.tasks import create_task
from storage.object_store import get_bytes, put_bytes
from testkit.api import api_client
from testkit.servers import free_port
from versioning.rows import read_canonical

ROWS = [
    {"question": "Which port does the web console use?", "answer": "The web console listens on port 7410."},
    {"question": "How long is the grace period?", "answer": "Unpaid plans keep working for a 15-day grace period."},
    {"question": "What does error FL-204 mean?", "answer": "FL-204 is a sync conflict between two edits."},
    {"question": "Which cipher protects data at rest?", "answer": "Data at rest is sealed with XChaCha20-Poly1305."},
    {"question": "How many users fit on the Free plan?", "answer": "The Free plan allows up to three users."},
    {"question": "Where are the metrics served?", "answer": "Prometheus metrics are served on port 7412."},
    {"question": "Does FerroLink run on Windows?", "answer": "No, the server runs on Linux only."},
]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def offline_settings(settings):
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}", "split_min_examples": 2})


@pytest.fixture
async def api(offline_settings):
    async with api_client(offline_settings) as client:
        yield client


async def upload(api, rows) -> dict:
    response = await api.post("/api/v1/datasets", files={"file": ("faq.jsonl", jsonl(rows))}, data={"name": "faq"})
    assert response.status_code == 201, response.text
    return response.json()


def stored_versions(settings) -> tuple[int, list[str]]:
    ctx = ActivityContext.from_settings(settings)
    with ctx.sessions() as session:
        count = session.query(DatasetVersion).count()
    return count, sorted(ctx.store.list("datasets/"))


async def test_versions_diffs_rows_annotations_and_downloads(api, offline_settings):
    dataset = await upload(api, ROWS)
    dataset_id, base = dataset["dataset_id"], f"/api/v1/datasets/{dataset['dataset_id']}"
    assert dataset["version"] == 1
    [first] = (await api.get(f"{base}/versions")).json()["items"]
    assert first["kind"] == "upload" and first["row_count"] == 7 and len(first["content_hash"]) == 64

    # a new upload: one answer corrected, one row gone, one added
    changed = [
        {**ROWS[0], "answer": "Setting 0 controls feature zero."},
        *ROWS[2:],
        {"question": "New?", "answer": "Yes."},
    ]
    response = await api.post(
        f"{base}/versions", files={"file": ("faq.jsonl", jsonl(changed))}, data={"reason": "fixed row 0"}
    )
    assert response.status_code == 201, response.text
    second = response.json()
    assert response.headers["location"] == f"{base}/versions/2"
    assert second["parent_version"] == 1 and second["reason"] == "fixed row 0"
    assert second["changes"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 5}
    diff = (await api.get(f"{base}/diff", params={"from_version": 1, "to_version": 2})).json()
    assert diff["counts"] == second["changes"]
    assert diff["changed"][0]["fields"] == ["answer"] and diff["removed"][0]["record"] == ROWS[1]
    assert diff["added"][0]["record"] == {"question": "New?", "answer": "Yes."}

    # review: checks derived where a row has none, marked so
    rows = (await api.get(f"{base}/versions/2/rows", params={"limit": 200})).json()
    assert rows["total"] == 7
    windows = next(r for r in rows["items"] if r["question"].startswith("Does FerroLink"))
    assert windows["checks"] == [{"derived": True, "type": "polarity", "value": "no"}]

    # annotate: a reviewed check, a tag, a row excluded
    edits = [
        {"row_id": windows["row_id"], "checks": [{"type": "contains_any", "values": ["Linux"]}], "add_tags": ["os"]},
        {"row_id": rows["items"][0]["row_id"], "excluded": True},
    ]
    response = await api.post(f"{base}/annotations", json={"reason": "review", "base_version": 2, "edits": edits})
    assert response.status_code == 201, response.text
    third = response.json()
    assert third["kind"] == "annotation" and third["version"] == 3 and third["changes"]["changed"] == 2
    assert third["created_by"] and third["reason"] == "review"
    tagged = (await api.get(f"{base}/versions/3/rows", params={"tag": "os"})).json()["items"]
    assert [r["row_id"] for r in tagged] == [windows["row_id"]]
    assert tagged[0]["checks"] == [{"derived": False, "type": "contains_any", "values": ["Linux"]}]
    assert (await api.get(f"{base}/versions/3/rows", params={"excluded": True})).json()["total"] == 1
    assert (await api.get(base)).json()["version"] == 3

    # downloads: the version itself, and two training formats without the excluded row
    for fmt, count in (("jsonl", 7), ("alpaca", 6), ("chat", 6)):
        response = await api.get(f"{base}/versions/3/download", params={"format": fmt})
        assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == count, fmt
    version_one = (await api.get(f"{base}/versions/1/download")).text
    assert [json.loads(line)["answer"] for line in version_one.splitlines()] == [r["answer"] for r in ROWS]

    # a task pins the head it was made on; its optimization reads that version even after the dataset moves on
    settings = offline_settings
    ctx = ActivityContext.from_settings(settings)
    with ctx.sessions() as session:
        org_id = (await api.get(base)).json()["org_id"]
        body = StandardTaskCreate(task_name="pinned", dataset_id=dataset_id, model_name="smollm2-135m-instruct")
        task = create_task(session, body, TaskMode.STANDARD, org_id, None)
        assert task.dataset_version == 3
    response = await api.post(
        f"{base}/annotations",
        json={"reason": "later", "edits": [{"row_id": windows["row_id"], "answer": "No."}]},
    )
    assert response.status_code == 201
    result = ActivityEnvironment().run(
        OptimizeActivities(ctx).optimize_dataset,
        OptimizeInput(
            task_id=task.id,
            org_id=org_id,
            iteration=1,
            dataset_id=dataset_id,
            dataset_version=3,
            splits_key=None,
            previous_evaluation_key=None,
        ),
    )
    assert result.log["rows_in"] == 7 and result.log["removed"] == {"excluded": 1}
    splits = json.dumps(ctx.read_json(result.splits_key))
    assert "Linux only" in splits and '"answer": "No."' not in splits


async def test_bad_versions_and_edits_are_4xx_with_nothing_written(api, offline_settings):
    dataset = await upload(api, ROWS)
    base = f"/api/v1/datasets/{dataset['dataset_id']}"
    row_id = (await api.get(f"{base}/versions/1/rows")).json()["items"][0]["row_id"]
    before = stored_versions(offline_settings)
    cases = [
        ({"reason": "x", "edits": [{"row_id": "nope", "answer": "y"}]}, 422, "'nope' is not in this version"),
        (
            {"reason": "x", "edits": [{"row_id": row_id, "checks": [{"type": "number"}]}]},
            422,
            f"row '{row_id}': 'checks.0.number.value'",
        ),
        ({"reason": "x", "edits": [{"row_id": row_id, "excluded": False}]}, 422, "changes nothing"),
        ({"reason": "x", "base_version": 4, "edits": [{"row_id": row_id, "excluded": True}]}, 409, "not 4"),
        ({"reason": "", "edits": [{"row_id": row_id, "excluded": True}]}, 422, "reason"),
        ({"reason": "x", "edits": []}, 422, "edits"),
    ]
    for body, status, message in cases:
        response = await api.post(f"{base}/annotations", json=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.text, (body, response.text)
    bad_file = await api.post(f"{base}/versions", files={"file": ("x.jsonl", b'{"question": "q"}\n{')})
    assert bad_file.status_code == 422 and "line 2" in bad_file.text
    assert stored_versions(offline_settings) == before
    assert (await api.get(f"{base}/versions/9")).status_code == 404
    assert (await api.get(f"{base}/versions/9/rows")).json()["detail"].startswith("dataset")
    diff = await api.get(f"{base}/diff", params={"from_version": 1, "to_version": 2})
    assert diff.status_code == 404 and "no version 2" in diff.text
    assert (await api.get(f"{base}/versions/1/download", params={"format": "xml"})).status_code == 422


@pytest.mark.postgres
async def test_two_writers_racing_from_the_same_head_on_postgresql(settings, postgres_url):
    """One annotation per row, all sent at once against the same head, on PostgreSQL: each lands as its own version
    or is refused with 409, the version numbers have no gap and no repeat, and every stored file belongs to a
    version."""
    settings = settings.model_copy(
        update={"database_url": postgres_url, "temporal_address": f"127.0.0.1:{free_port()}"}
    )
    async with api_client(settings) as api:
        dataset = await upload(api, ROWS)
        base = f"/api/v1/datasets/{dataset['dataset_id']}"
        row_ids = [r["row_id"] for r in (await api.get(f"{base}/versions/1/rows")).json()["items"]]
        responses = await asyncio.gather(
            *(
                api.post(
                    f"{base}/annotations", json={"reason": f"w{i}", "edits": [{"row_id": r, "add_tags": [f"w{i}"]}]}
                )
                for i, r in enumerate(row_ids)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409} and 201 in statuses, [r.text for r in responses]
        assert all("read it again" in r.json()["detail"] for r in responses if r.status_code == 409)
        versions = (await api.get(f"{base}/versions")).json()["items"]
        assert [v["version"] for v in versions] == list(range(1, 2 + statuses.count(201)))
        ctx = ActivityContext.from_settings(settings)
        stored = set(ctx.store.list("datasets/"))
        with ctx.sessions() as session:
            keys = set(session.scalars(select(DatasetVersion.storage_key)))
        assert stored == keys and len(keys) == len(versions)  # a loser's file went with its write


async def test_uploads_are_stored_as_canonical_rows_and_older_files_still_diff(api, offline_settings):
    """A CSV upload is stored as its canonical rows (the records kept, each with its id), its size is the stored
    file's, and a diff reads stored files without parsing their shared rows; a version whose file was stored otherwise
    (as uploads were before) is parsed and diffs the same."""
    csv = (
        b'question,answer,checks\nWhich port?,Port 7410.,"[{""type"": ""number"", ""value"": 7410}]"\n'
        + "Café?,Oui.,\n".encode()
    )
    response = await api.post("/api/v1/datasets", files={"file": ("faq.csv", csv)}, data={"name": "faq"})
    assert response.status_code == 201, response.text
    dataset = response.json()
    base = f"/api/v1/datasets/{dataset['dataset_id']}"
    assert dataset["file_format"] == "jsonl" and dataset["sample_count"] == 2
    ctx = ActivityContext.from_settings(offline_settings)
    with ctx.sessions() as session:
        first = session.scalars(select(DatasetVersion).where(DatasetVersion.version == 1)).one()
        key, recorded = first.storage_key, first.content_hash
    data = get_bytes(ctx.store, key)
    canonical = read_canonical(data, recorded)
    assert canonical is not None and dataset["size_bytes"] == len(data)
    assert [r.record for r in canonical.rows()] == [
        {"question": "Which port?", "answer": "Port 7410.", "checks": [{"type": "number", "value": 7410}]},
        {"question": "Café?", "answer": "Oui."},
    ]
    preview = (await api.get(f"{base}/preview")).json()["rows"]
    assert [r["question"] for r in preview] == ["Which port?", "Café?"]

    changed = jsonl([{"question": "Which port?", "answer": "Port 7411."}, {"question": "New?", "answer": "Yes."}])
    response = await api.post(f"{base}/versions", files={"file": ("faq.jsonl", changed)}, data={"reason": "r"})
    assert response.status_code == 201, response.text
    assert response.json()["changes"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 0}
    diff = (await api.get(f"{base}/diff", params={"from_version": 1, "to_version": 2})).json()
    assert diff["changed"][0]["fields"] == ["answer", "checks"] and diff["removed"][0]["record"]["question"] == "Café?"

    # version 1's file as uploads were stored before: the user's own file, parsed for the diff
    put_bytes(ctx.store, key, csv)
    with ctx.sessions() as session:
        first = session.scalars(select(DatasetVersion).where(DatasetVersion.version == 1)).one()
        first.file_format = "csv"
        session.commit()
    assert (await api.get(f"{base}/diff", params={"from_version": 1, "to_version": 2})).json() == diff
    for fmt in ("jsonl", "alpaca", "chat"):
        response = await api.get(f"{base}/versions/2/download", params={"format": fmt})
        assert response.status_code == 200 and len(response.text.splitlines()) == 2, fmt
