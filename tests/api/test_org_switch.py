"""Switching organization without the password: only into the caller's own organizations, with the role held there,
never for an API key, and audited like a login."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from api.main import create_app
from cli.users import create_user
from core.access import Role
from db.models import AuditEntry
from db.session import get_sessionmaker
from testkit.api import TEST_PASSWORD, anonymous_client
from testkit.servers import free_port


@pytest.fixture
def offline_settings(settings):
    """Temporal is not running: nothing here needs it."""
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


@pytest.fixture
def app(offline_settings):
    create_user(offline_settings, "alice", TEST_PASSWORD, "acme", Role.OWNER)
    create_user(offline_settings, "alice", TEST_PASSWORD, "globex", Role.VIEWER)
    create_user(offline_settings, "mallory", TEST_PASSWORD, "initech", Role.OWNER)
    return create_app(offline_settings)


async def signed_in(app, username: str, org: str) -> tuple[dict, dict]:
    """The token pair of a password login into `org`, and what /auth/me says of it."""
    async with anonymous_client(app) as client:
        pair = (
            await client.post("/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD, "org": org})
        ).json()
        me = (await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})).json()
    return pair, me


async def test_a_member_of_two_organizations_switches_with_the_role_held_there(app):
    pair, me = await signed_in(app, "alice", "acme")
    orgs = {o["org_name"]: o for o in me["organizations"]}
    assert set(orgs) == {"acme", "globex"} and me["org_name"] == "acme" and me["role"] == "owner"
    async with anonymous_client(app, {"Authorization": f"Bearer {pair['access_token']}"}) as client:
        switched = await client.post("/api/v1/auth/switch", json={"org_id": orgs["globex"]["org_id"]})
    assert switched.status_code == 200, switched.text
    new = switched.json()
    assert (new["org_id"], new["role"]) == (orgs["globex"]["org_id"], "viewer")
    async with anonymous_client(app, {"Authorization": f"Bearer {new['access_token']}"}) as client:
        assert (await client.get("/api/v1/auth/me")).json()["org_name"] == "globex"
        refused = await client.post("/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": "d"})
        # the role in globex, not the owner's of acme
        assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
        assert refreshed.json()["org_id"] == orgs["globex"]["org_id"]
    async with anonymous_client(app, {"Authorization": f"Bearer {pair['access_token']}"}) as client:
        assert (await client.get("/api/v1/auth/me")).json()[
            "org_name"
        ] == "acme"  # the earlier pair still works, in its own organization


async def test_another_organization_is_not_found_and_an_api_key_cannot_switch(app):
    pair, me = await signed_in(app, "alice", "acme")
    _, mallory = await signed_in(app, "mallory", "initech")
    async with anonymous_client(app, {"Authorization": f"Bearer {pair['access_token']}"}) as client:
        for org_id in (mallory["org_id"], "nope"):
            response = await client.post("/api/v1/auth/switch", json={"org_id": org_id})
            assert response.status_code == 404 and "not found" in response.json()["detail"]
        assert (
            await client.post("/api/v1/auth/switch", json={"org": "globex"})
        ).status_code == 422  # ids only, as /auth/me lists them
        key = (await client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["datasets:read"]})).json()
    async with anonymous_client(app, {"Authorization": f"Bearer {key['secret']}"}) as client:
        response = await client.post("/api/v1/auth/switch", json={"org_id": me["organizations"][1]["org_id"]})
    assert response.status_code == 403 and "API keys cannot switch" in response.json()["detail"]
    async with anonymous_client(app) as client:
        assert (await client.post("/api/v1/auth/switch", json={"org_id": me["org_id"]})).status_code == 401


async def test_switching_is_audited_in_the_organization_entered_and_a_refusal_in_the_one_left(app, offline_settings):
    pair, me = await signed_in(app, "alice", "acme")
    acme, globex = (
        next(o["org_id"] for o in me["organizations"] if o["org_name"] == name) for name in ("acme", "globex")
    )
    async with anonymous_client(app, {"Authorization": f"Bearer {pair['access_token']}"}) as client:
        assert (await client.post("/api/v1/auth/switch", json={"org_id": globex})).status_code == 200
        assert (await client.post("/api/v1/auth/switch", json={"org_id": "nope"})).status_code == 404
    with get_sessionmaker(offline_settings.resolved_database_url)() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "POST /api/v1/auth/switch").order_by(AuditEntry.id)
        ).all()
    assert [(r.org_id, r.actor_user_id, r.status_code) for r in rows] == [
        (globex, me["user_id"], 200),
        (acme, me["user_id"], 404),
    ]
