"""Tasks: another tenant's are out of reach, server-owned fields are refused, running tasks are bounded."""

from __future__ import annotations

import contextlib

from sqlalchemy import func, select
from temporalio.service import RPCError

from api.main import create_app
from core.access import Role
from db.models import MLTask
from testkit.api import client_for, with_temporal
from testkit.world import GOOD_ROWS, assert_org_a_untouched, assert_org_b_finds_nothing_of, db, jsonl, names_field


async def test_org_b_cannot_reach_org_a_tasks(world):
    b = world.other
    await assert_org_b_finds_nothing_of(world, "tasks")
    # B's list is its own
    assert (await b.get("/api/v1/tasks")).json()["total"] == 0
    await assert_org_a_untouched(world)


async def test_task_creation_refuses_server_owned_fields(world):
    ids = world.ids
    base = {"task_name": "t", "dataset_id": ids["dataset_id"]}
    server_owned = {
        "owner": world.b_ids["org_id"],
        "org_id": world.b_ids["org_id"],
        "status": "COMPLETED",
        "latest_score": 1.0,
        "task_id": "chosen-id",
        "created_by": world.b_ids["user_id"],
        "started_at": "2020-01-01T00:00:00Z",
        "report_path": "/etc/passwd",
        "report_key": "x",
        "latest_adapter_key": "x",
        "current_iteration": 3,
    }
    for mode in ("standard", "continuous"):
        for name, value in server_owned.items():
            response = await world.owner.post(f"/api/v1/tasks/{mode}", json={**base, name: value})
            assert names_field(response, name), f"{mode} {name}: {response.status_code} {response.text}"
    with db(world.settings) as session:
        assert session.scalar(select(func.count()).select_from(MLTask)) == 2  # the world's own two tasks, nothing more


async def test_the_running_task_quota_is_429_and_restarting_is_not_blocked(temporal_env, settings):
    online = with_temporal(settings, temporal_env, max_running_tasks_per_org=1)
    app = create_app(online)
    owner = client_for(app, online, "alice", "org-a", Role.OWNER)
    dataset = (
        await owner.post("/api/v1/datasets", files={"file": ("q.jsonl", jsonl(GOOD_ROWS))}, data={"name": "q"})
    ).json()
    first, second = [
        (await owner.post("/api/v1/tasks/standard", json={"task_name": n, "dataset_id": dataset["dataset_id"]})).json()[
            "task_id"
        ]
        for n in ("first", "second")
    ]
    try:
        response = await owner.post(f"/api/v1/tasks/{first}/start")
        assert response.status_code == 202, response.text
        refused = await owner.post(f"/api/v1/tasks/{second}/start")
        assert refused.status_code == 429, refused.text
        assert "its limit is 1" in refused.json()["detail"]
        again = await owner.post(f"/api/v1/tasks/{first}/start")  # a repeated start is not a second running task
        assert again.status_code == 202, again.text
        with db(online) as session:
            assert session.get(MLTask, first).started_at is not None
            assert session.get(MLTask, second).started_at is None
        org = (await owner.get("/api/v1/auth/me")).json()["org_id"]
        assert (await owner.get(f"/api/v1/orgs/{org}")).json()["running_tasks"] == 1
    finally:  # no worker runs these, but another test's worker on the same dev server must not pick them up
        for task_id in (first, second):
            with contextlib.suppress(RPCError):  # never started
                await temporal_env.client.get_workflow_handle(task_id).terminate("access-control test over")
        await owner.aclose()
