"""Organizations and members: another tenant's are out of reach, removal revokes access, fields and body sizes are
checked."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from api.main import create_app
from core.access import Role
from db.models import Organization, User
from testkit.api import TEST_PASSWORD, anonymous_client, client_for
from testkit.world import (
    assert_401,
    assert_org_a_untouched,
    assert_org_b_finds_nothing_of,
    assert_refresh_401,
    db,
    login,
    names_field,
    raw_request,
    token_header,
)


async def test_org_b_cannot_reach_org_a_or_its_members(world):
    await assert_org_b_finds_nothing_of(world, "orgs")
    await assert_org_a_untouched(world)


async def test_removed_members_and_their_keys_lose_access_and_keys_never_outrank_their_creator(world):
    org = world.ids["org_id"]
    created = await world.owner.post(
        f"/api/v1/orgs/{org}/members", json={"username": "adam", "role": "admin", "password": TEST_PASSWORD}
    )
    assert created.status_code == 201, created.text
    adam_id = created.json()["user_id"]
    pair = (await login(world.app, "adam")).json()
    adam = anonymous_client(world.app, {"Authorization": f"Bearer {pair['access_token']}"})
    key = await adam.post("/api/v1/api-keys", json={"name": "ci", "scopes": ["datasets:read", "tasks:write"]})
    assert key.status_code == 201, key.text
    program = anonymous_client(world.app, {"Authorization": f"Bearer {key.json()['secret']}"})
    body = {"task_name": "from-ci", "dataset_id": world.ids["dataset_id"]}
    assert (await program.post("/api/v1/tasks/standard", json=body)).status_code == 201
    assert (await program.get("/api/v1/tasks")).status_code == 403  # never granted tasks:read

    # an admin cannot make themselves owner; once demoted to viewer, their key loses tasks:write
    assert (await adam.patch(f"/api/v1/orgs/{org}/members/{adam_id}", json={"role": "owner"})).status_code == 403
    assert (
        await world.owner.patch(f"/api/v1/orgs/{org}/members/{adam_id}", json={"role": "viewer"})
    ).status_code == 200
    denied = await program.post("/api/v1/tasks/standard", json=body)
    assert denied.status_code == 403 and "tasks:write" in denied.json()["detail"]
    assert (await program.get("/api/v1/datasets")).status_code == 200
    assert (await adam.get("/api/v1/api-keys")).status_code == 403  # the role is read per request, not from the token

    assert (await world.owner.delete(f"/api/v1/orgs/{org}/members/{adam_id}")).status_code == 204
    await assert_401(world.app, pair["access_token"], message="revoked")  # removal ends the member's sessions
    await assert_refresh_401(world.app, pair["refresh_token"])
    # removal revokes the member's keys
    await assert_401(world.app, key.json()["secret"], path="/api/v1/datasets", message="revoked")
    assert (await login(world.app, "adam")).status_code == 401
    # added back, the old tokens stay dead: removal bumped the user's token version
    assert (
        await world.owner.post(f"/api/v1/orgs/{org}/members", json={"username": "adam", "role": "member"})
    ).status_code == 201
    await assert_401(world.app, pair["access_token"], message="revoked")
    await assert_401(world.app, key.json()["secret"], path="/api/v1/datasets", message="revoked")
    await adam.aclose()
    await program.aclose()


async def test_members_and_orgs_refuse_fields_clients_may_not_set(world):
    org, owner = world.ids["org_id"], world.owner
    for name, value in {
        "org_id": world.b_ids["org_id"],
        "user_id": world.b_ids["user_id"],
        "created_at": "2020-01-01T00:00:00Z",
    }.items():
        response = await owner.post(f"/api/v1/orgs/{org}/members", json={"username": "bob", name: value})
        assert names_field(response, name), f"member {name}: {response.text}"
        response = await owner.patch(
            f"/api/v1/orgs/{org}/members/{world.viewer_id}", json={"role": "member", name: value}
        )
        assert names_field(response, name), f"member update {name}: {response.text}"
    for name, value in {
        "owner": world.b_ids["user_id"],
        "org_id": "chosen",
        "max_storage_bytes": 10**15,
        "max_running_tasks": 1000,
    }.items():
        response = await owner.post("/api/v1/orgs", json={"name": "new-org", name: value})
        assert names_field(response, name), f"org {name}: {response.text}"
        response = await owner.patch(f"/api/v1/orgs/{org}", json={"name": "renamed", name: value})
        assert names_field(response, name), f"org update {name}: {response.text}"
    with db(world.settings) as session:
        assert session.scalar(select(func.count()).select_from(Organization)) == 2
        assert session.scalar(select(func.count()).select_from(User)) == 3
    await assert_org_a_untouched(world)


async def test_json_bodies_over_the_request_limit_are_413_however_they_arrive(offline_settings):
    settings = offline_settings.model_copy(update={"max_request_bytes": 1024})
    app = create_app(settings)
    owner = client_for(app, settings, "alice", "org-a", Role.OWNER)
    big = json.dumps({"name": "x" * 2000}).encode()
    response = await owner.post("/api/v1/orgs", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "1024 byte limit" in response.json()["detail"]
    headers = {**token_header(owner), "content-type": "application/json"}
    pieces = [big[i : i + 300] for i in range(0, len(big), 300)]
    for label, extra in {
        "lying Content-Length": {"content-length": "20"},
        "chunked": {"transfer-encoding": "chunked"},
    }.items():
        status, body = await raw_request(app, "POST", "/api/v1/orgs", {**headers, **extra}, pieces)
        assert status == 413 and "1024 byte limit" in body["detail"], f"{label}: {status} {body}"
    status, _ = await raw_request(
        app, "POST", "/api/v1/orgs", {**headers, "content-length": "lots"}, [b'{"name": "n"}']
    )
    assert status in (400, 413)
    # the limit applies before authentication too, and a body under it is fine
    async with anonymous_client(app) as anonymous:
        assert (
            await anonymous.post("/api/v1/auth/login", content=big, headers={"content-type": "application/json"})
        ).status_code == 413
    assert (await owner.post("/api/v1/orgs", json={"name": "small"})).status_code == 201
    with db(settings) as session:
        assert sorted(session.scalars(select(Organization.name))) == ["org-a", "small"]
    await owner.aclose()
