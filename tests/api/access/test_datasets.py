"""Datasets: another tenant's are out of reach, server-owned fields are the server's, uploads and storage are
bounded."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import func, select

from api.main import create_app
from core.access import Role
from db.models import Dataset
from testkit.api import client_for
from testkit.world import (
    GOOD_ROWS,
    assert_org_a_untouched,
    assert_org_b_finds_nothing_of,
    db,
    jsonl,
    raw_request,
    token_header,
)


async def test_org_b_cannot_reach_org_a_datasets(world):
    b = world.other
    await assert_org_b_finds_nothing_of(world, "datasets")
    # B's list is its own
    assert (await b.get("/api/v1/datasets")).json()["total"] == 0
    await assert_org_a_untouched(world)


async def test_dataset_creation_ignores_server_owned_fields(world):
    ids = world.ids
    form = {
        "name": "mine",
        "owner": world.b_ids["org_id"],
        "org_id": world.b_ids["org_id"],
        "created_by": world.b_ids["user_id"],
        "dataset_id": "chosen-id",
        "task_id": ids["task_id"],
        "is_optimized": "true",
        "source_dataset_id": ids["dataset_id"],
        "size_bytes": "1",
        "sample_count": "999",
    }
    response = await world.owner.post("/api/v1/datasets", files={"file": ("m.jsonl", jsonl(GOOD_ROWS))}, data=form)
    assert response.status_code == 201, response.text
    body = response.json()
    with db(world.settings) as session:
        stored = session.get(Dataset, body["dataset_id"])
        assert (
            stored.org_id,
            stored.created_by,
            stored.task_id,
            stored.is_optimized,
            stored.source_dataset_id,
            stored.sample_count,
        ) == (ids["org_id"], world.owner_id, None, False, None, 5)
        assert stored.id != "chosen-id" and session.get(Dataset, "chosen-id") is None
        assert stored.storage_key.startswith(f"datasets/{ids['org_id']}/")
    assert (await world.other.get("/api/v1/datasets")).json()["total"] == 0


def nothing_stored(settings, datasets: int = 0) -> bool:
    with db(settings) as session:
        rows = session.scalar(select(func.count()).select_from(Dataset))
    files = (
        [p for p in settings.object_store_dir.rglob("*") if p.is_file()] if settings.object_store_dir.exists() else []
    )
    return rows == datasets and len(files) == datasets


def multipart(boundary: str, filename: str, content: bytes) -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )


async def test_uploads_over_size_rows_or_line_limits_are_refused_and_leave_nothing(offline_settings):
    settings = offline_settings.model_copy(
        update={"max_upload_bytes": 2000, "max_upload_rows": 3, "max_line_bytes": 1024}
    )
    app = create_app(settings)
    owner = client_for(app, settings, "alice", "org-a", Role.OWNER)

    async def upload(name: str, content: bytes) -> httpx.Response:
        return await owner.post("/api/v1/datasets", files={"file": (name, content)}, data={"name": "d"})

    many = jsonl(GOOD_ROWS * 60)
    assert 2000 < len(many) < 64 * 1024
    # over max_upload_bytes, within the multipart allowance: the service counts
    response = await upload("big.jsonl", many)
    assert response.status_code == 413 and "2000 byte limit" in response.json()["detail"]
    assert nothing_stored(settings)
    huge = jsonl(GOOD_ROWS * 2000)
    assert len(huge) > 2000 + 64 * 1024
    response = await upload("huge.jsonl", huge)  # over the whole allowance: refused by Content-Length up front
    assert response.status_code == 413 and "byte limit" in response.json()["detail"]
    assert nothing_stored(settings)
    body = multipart("b0undary", "huge.jsonl", huge)
    headers = {**token_header(owner), "content-type": "multipart/form-data; boundary=b0undary"}
    pieces = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    for label, extra in {
        "lying Content-Length": {"content-length": "300"},
        "chunked": {"transfer-encoding": "chunked"},
    }.items():
        status, detail = await raw_request(app, "POST", "/api/v1/datasets", {**headers, **extra}, pieces)
        assert status == 413 and "byte limit" in detail["detail"], f"{label}: {status} {detail}"
        assert nothing_stored(settings)

    response = await upload("rows.jsonl", jsonl(GOOD_ROWS))  # 5 rows, 3 allowed
    assert response.status_code == 422 and "too many rows (more than 3)" in response.json()["detail"]
    assert nothing_stored(settings)
    long_line = jsonl(GOOD_ROWS[:2]) + json.dumps({"question": "q", "answer": "a" * 1100}).encode() + b"\n"
    response = await upload("long.jsonl", long_line)
    assert (
        response.status_code == 422
        and "line 3" in response.json()["detail"]
        and "1024 byte limit" in response.json()["detail"]
    )
    assert nothing_stored(settings)
    response = await upload("long.csv", b"question,answer\nq," + b"a" * 1100 + b"\n")
    assert response.status_code == 422 and "line 2" in response.json()["detail"]
    assert nothing_stored(settings)
    assert (await upload("ok.jsonl", jsonl(GOOD_ROWS[:3]))).status_code == 201  # the control
    assert nothing_stored(settings, datasets=1)
    await owner.aclose()


async def test_the_storage_quota_is_409_with_the_limit_and_stores_nothing(offline_settings):
    content = jsonl(GOOD_ROWS)
    settings = offline_settings.model_copy(update={"max_storage_bytes_per_org": len(content) * 2 - 1})
    app = create_app(settings)
    owner = client_for(app, settings, "alice", "org-a", Role.OWNER)
    other = client_for(app, settings, "bob", "org-b", Role.OWNER)
    upload = {"files": {"file": ("q.jsonl", content)}, "data": {"name": "q"}}
    first = await owner.post("/api/v1/datasets", **upload)
    assert first.status_code == 201
    response = await owner.post("/api/v1/datasets", **upload)
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "storage quota" in detail and f"the limit is {settings.max_storage_bytes_per_org} bytes" in detail
    assert nothing_stored(settings, datasets=1)
    org = (await owner.get("/api/v1/auth/me")).json()["org_id"]
    # what is stored: the upload's canonical rows (a row id each, no spaces)
    assert (await owner.get(f"/api/v1/orgs/{org}")).json()["storage_bytes"] == first.json()["size_bytes"] > 0
    assert (await other.post("/api/v1/datasets", **upload)).status_code == 201  # the quota is per organization
    await owner.aclose()
    await other.aclose()
