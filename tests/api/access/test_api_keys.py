"""API keys: another tenant's are out of reach, bad secrets are 401, clients cannot set what the server owns."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from core.access import API_KEY_SCOPES, Scope
from core.clock import utcnow
from db.models import ApiKey
from testkit.world import assert_401, assert_org_a_untouched, assert_org_b_finds_nothing_of, db, names_field


async def test_org_b_cannot_reach_org_a_api_keys(world):
    b = world.other
    await assert_org_b_finds_nothing_of(world, "api_keys")
    # B's list is its own
    assert (await b.get("/api/v1/api-keys")).json() == []
    await assert_org_a_untouched(world)


async def test_revoked_expired_and_wrong_secret_api_keys_are_401_and_use_is_recorded(world):
    keys = (await world.owner.get("/api/v1/api-keys")).json()
    assert (
        keys[0]["last_used_at"] is None
        and world.key_prefix.startswith("wlk_")
        and world.key_secret.startswith(world.key_prefix + "_")
    )
    assert (await world.reader.get("/api/v1/datasets")).status_code == 200
    listed = await world.owner.get("/api/v1/api-keys")
    assert listed.json()[0]["last_used_at"] is not None
    assert world.key_secret not in listed.text and "secret" not in listed.json()[0]  # shown once, at creation

    # right prefix, wrong secret of the right shape
    secret = world.key_secret[len(world.key_prefix) + 1 :]
    wrong = world.key_prefix + "_" + ("A" if secret[0] != "A" else "B") + secret[1:]
    await assert_401(world.app, wrong, path="/api/v1/datasets", message="invalid")
    await assert_401(world.app, world.key_secret + "x", path="/api/v1/datasets")

    other = (
        await world.owner.post("/api/v1/api-keys", json={"name": "soon-expired", "scopes": ["datasets:read"]})
    ).json()
    with db(world.settings) as session:
        session.get(ApiKey, other["key_id"]).expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    await assert_401(world.app, other["secret"], path="/api/v1/datasets", message="expired")

    revoked = await world.owner.delete(f"/api/v1/api-keys/{world.ids['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    await assert_401(world.app, world.key_secret, path="/api/v1/datasets", message="revoked")
    assert (await world.owner.delete(f"/api/v1/api-keys/{world.ids['key_id']}")).status_code == 200  # idempotent


async def test_api_keys_refuse_fields_and_scopes_clients_may_not_set(world):
    owner = world.owner
    for scope in sorted(set(Scope) - API_KEY_SCOPES):
        response = await owner.post("/api/v1/api-keys", json={"name": "k", "scopes": ["datasets:read", scope.value]})
        assert response.status_code == 422 and scope.value in json.dumps(response.json()), f"{scope}: {response.text}"
    assert (await owner.post("/api/v1/api-keys", json={"name": "k", "scopes": ["admin:everything"]})).status_code == 422
    for name, value in {
        "created_by": world.b_ids["user_id"],
        "org_id": world.b_ids["org_id"],
        "prefix": "0123456789ab",
        "secret": "wlk_x",
        "last_used_at": "2020-01-01T00:00:00Z",
        "revoked_at": None,
    }.items():
        response = await owner.post("/api/v1/api-keys", json={"name": "k", "scopes": ["datasets:read"], name: value})
        assert names_field(response, name), f"api key {name}: {response.text}"
    with db(world.settings) as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1
    # the only key is still the original datasets:read one; nothing else changed either
    assert [k["scopes"] for k in (await owner.get("/api/v1/api-keys")).json()] == [["datasets:read"]]
    await assert_org_a_untouched(world)
