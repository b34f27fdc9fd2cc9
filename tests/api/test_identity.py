"""Identity through the HTTP API, as a user meets it: logging in, organizations, members, API keys, the audit log;
plus `wlops user create`, `wlops db upgrade`, the development owner and migrations 0002-0003 on existing data."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from api.main import create_app
from auth.accounts import ensure_user
from cli.main import main as wlops
from cli.users import create_user, ensure_dev_owner
from core.access import ROLE_SCOPES, Role
from core.settings import Settings, get_settings
from db.models import AuditEntry, Organization
from db.session import MIGRATIONS_DIR, get_engine, get_sessionmaker, migrate
from testkit.api import TEST_PASSWORD, anonymous_client, client_for
from testkit.servers import free_port

GOOD_ROWS = [{"question": f"What is setting {i}?", "answer": f"Setting {i} controls feature {i}."} for i in range(5)]
DATASET = "".join(json.dumps(r) + "\n" for r in GOOD_ROWS).encode()


@pytest.fixture
def offline_settings(settings):
    """Temporal is not running: nothing here needs it."""
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


@pytest.fixture
def app(offline_settings):
    return create_app(offline_settings)


@pytest.fixture
async def clients(app, offline_settings):
    """`clients.user(username, org, role)` signs a user in (creating what is missing); `clients.token(t)` sends a
    bearer token or API key; `clients.anonymous()`. All are closed at the end."""

    class Clients:
        def __init__(self):
            self.opened: list[httpx.AsyncClient] = []

        def user(self, username: str, org: str = "acme", role: Role = Role.OWNER) -> httpx.AsyncClient:
            return self._keep(client_for(app, offline_settings, username, org, role))

        def token(self, token: str) -> httpx.AsyncClient:
            return self._keep(anonymous_client(app, {"Authorization": f"Bearer {token}"}))

        def anonymous(self) -> httpx.AsyncClient:
            return self._keep(anonymous_client(app))

        def _keep(self, client: httpx.AsyncClient) -> httpx.AsyncClient:
            self.opened.append(client)
            return client

    made = Clients()
    yield made
    for client in made.opened:
        await client.aclose()


async def login(clients, username: str, password: str = TEST_PASSWORD, org: str | None = None) -> httpx.Response:
    body = {"username": username, "password": password} | ({"org": org} if org is not None else {})
    return await clients.anonymous().post("/api/v1/auth/login", json=body)


async def upload(api: httpx.AsyncClient, name: str = "faq") -> httpx.Response:
    return await api.post("/api/v1/datasets", files={"file": ("faq.jsonl", DATASET)}, data={"name": name})


async def me(api: httpx.AsyncClient) -> dict:
    response = await api.get("/api/v1/auth/me")
    assert response.status_code == 200, response.text
    return response.json()


# --- logging in ---------------------------------------------------------------------------------


async def test_login_me_refresh_and_logout(clients, offline_settings):
    create_user(offline_settings, "alice", TEST_PASSWORD, "acme", Role.ADMIN)
    response = await login(clients, "alice")
    assert response.status_code == 200, response.text
    first = response.json()
    assert first["token_type"] == "bearer" and first["role"] == "admin"
    assert (
        first["expires_in"] == offline_settings.access_token_minutes * 60
        and first["access_token"] != first["refresh_token"]
    )

    alice = clients.token(first["access_token"])
    profile = await me(alice)
    assert profile["username"] == "alice" and profile["org_id"] == first["org_id"] and profile["org_name"] == "acme"
    assert profile["role"] == "admin" and profile["api_key_id"] is None
    assert profile["scopes"] == sorted(s.value for s in ROLE_SCOPES[Role.ADMIN])
    assert profile["organizations"] == [{"org_id": first["org_id"], "org_name": "acme", "role": "admin"}]

    refreshed = await clients.anonymous().post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert (
        second["org_id"] == first["org_id"]
        and second["role"] == "admin"
        and second["access_token"] != first["access_token"]
    )
    assert (await me(clients.token(second["access_token"])))["user_id"] == profile["user_id"]
    wrong_type = await clients.anonymous().post("/api/v1/auth/refresh", json={"refresh_token": first["access_token"]})
    assert wrong_type.status_code == 401

    assert (await clients.token(second["access_token"]).post("/api/v1/auth/logout")).status_code == 204
    for token in (first["access_token"], second["access_token"]):
        response = await clients.token(token).get("/api/v1/auth/me")
        assert response.status_code == 401 and "revoked" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    for token in (first["refresh_token"], second["refresh_token"]):
        assert (
            await clients.anonymous().post("/api/v1/auth/refresh", json={"refresh_token": token})
        ).status_code == 401
    assert (await login(clients, "alice")).status_code == 200  # logging in again works
    wrong = await login(clients, "alice", "not the password")
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong username or password"


async def test_a_member_of_two_organizations_chooses_one_and_the_token_acts_only_there(clients, offline_settings):
    create_user(offline_settings, "alice", TEST_PASSWORD, "acme", Role.MEMBER)
    globex = create_user(offline_settings, "alice", TEST_PASSWORD, "globex", Role.VIEWER).org
    acme_id = (await me(clients.user("acme-owner", "acme"))).get("org_id")

    ambiguous = await login(clients, "alice")
    assert (
        ambiguous.status_code == 422 and "acme" in ambiguous.json()["detail"] and "globex" in ambiguous.json()["detail"]
    )
    by_name = (await login(clients, "alice", org="globex")).json()
    by_id = (await login(clients, "alice", org=acme_id)).json()
    assert (by_name["org_id"], by_name["role"]) == (globex.id, "viewer")
    assert (by_id["org_id"], by_id["role"]) == (acme_id, "member")
    assert (await login(clients, "alice", org="initech")).status_code == 401

    in_globex, in_acme = clients.token(by_name["access_token"]), clients.token(by_id["access_token"])
    profile = await me(in_globex)
    assert profile["org_name"] == "globex" and {o["org_name"]: o["role"] for o in profile["organizations"]} == {
        "acme": "member",
        "globex": "viewer",
    }
    assert (await upload(in_globex)).status_code == 403  # a viewer there
    assert (await upload(in_acme)).status_code == 201  # a member here
    assert (await in_acme.get("/api/v1/datasets")).json()["total"] == 1
    assert (await in_globex.get("/api/v1/datasets")).json()["total"] == 0
    assert (await in_globex.get(f"/api/v1/orgs/{acme_id}")).status_code == 404
    assert (await in_globex.get(f"/api/v1/orgs/{globex.id}")).status_code == 200


# --- organizations --------------------------------------------------------------------------------


async def test_organizations_create_show_quotas_and_rename(clients, offline_settings):
    owner = clients.user("olga", "acme", Role.OWNER)
    created = await owner.post("/api/v1/orgs", json={"name": "newco"})
    assert created.status_code == 201, created.text
    org = created.json()
    assert created.headers["location"] == f"/api/v1/orgs/{org['org_id']}" and org["name"] == "newco"
    assert (await owner.post("/api/v1/orgs", json={"name": "newco"})).status_code == 409
    assert (await owner.post("/api/v1/orgs", json={"name": "acme"})).status_code == 409
    assert (await login(clients, "olga", org="newco")).json()["role"] == "owner"  # the creator owns it

    acme_id = (await me(owner))["org_id"]
    before = (await owner.get(f"/api/v1/orgs/{acme_id}")).json()
    assert before["running_tasks"] == 0 and before["max_running_tasks"] == offline_settings.max_running_tasks_per_org
    assert before["storage_bytes"] == 0 and before["max_storage_bytes"] == offline_settings.max_storage_bytes_per_org
    uploaded = await upload(owner)
    assert uploaded.status_code == 201
    # what is stored: the upload's canonical rows
    assert (await owner.get(f"/api/v1/orgs/{acme_id}")).json()["storage_bytes"] == uploaded.json()["size_bytes"] > 0

    renamed = await owner.patch(f"/api/v1/orgs/{acme_id}", json={"name": "acme corp"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "acme corp"
    assert (await owner.patch(f"/api/v1/orgs/{acme_id}", json={"name": "newco"})).status_code == 409
    admin = clients.user("adam", "acme corp", Role.ADMIN)
    assert (await admin.patch(f"/api/v1/orgs/{acme_id}", json={"name": "mine now"})).status_code == 403
    assert (await admin.get(f"/api/v1/orgs/{acme_id}")).json()["name"] == "acme corp"


# --- members --------------------------------------------------------------------------------------


async def test_admins_add_new_and_existing_users(clients, offline_settings):
    admin = clients.user("adam", "acme", Role.ADMIN)
    org_id = (await me(admin))["org_id"]
    members = f"/api/v1/orgs/{org_id}/members"

    added = await admin.post(members, json={"username": "newbie", "password": TEST_PASSWORD, "role": "member"})
    assert added.status_code == 201, added.text
    assert added.json()["role"] == "member" and added.headers["location"] == f"{members}/{added.json()['user_id']}"
    assert (await login(clients, "newbie")).json()["role"] == "member"  # the account works at once

    create_user(offline_settings, "outsider", TEST_PASSWORD, "globex", Role.OWNER)
    existing = await admin.post(members, json={"username": "outsider", "role": "viewer"})
    assert existing.status_code == 201 and existing.json()["role"] == "viewer"
    assert (await login(clients, "outsider", org="acme")).json()["role"] == "viewer"

    no_password = await admin.post(members, json={"username": "ghost", "role": "member"})
    assert no_password.status_code == 422 and "password" in no_password.json()["detail"]
    with_password = await admin.post(members, json={"username": "outsider", "password": TEST_PASSWORD})
    assert with_password.status_code == 422 and "leave out `password`" in with_password.json()["detail"]
    assert (await admin.post(members, json={"username": "newbie"})).status_code == 409  # already a member
    listed = {m["username"]: m["role"] for m in (await admin.get(members)).json()}
    assert listed == {"adam": "admin", "newbie": "member", "outsider": "viewer"}


async def test_only_owners_touch_owners_and_the_last_owner_stays(clients):
    owner = clients.user("olga", "acme", Role.OWNER)
    admin = clients.user("adam", "acme", Role.ADMIN)
    org_id = (await me(owner))["org_id"]
    members = f"/api/v1/orgs/{org_id}/members"
    owner_id = (await me(owner))["user_id"]
    newbie_id = (await admin.post(members, json={"username": "newbie", "password": TEST_PASSWORD})).json()["user_id"]

    assert (
        await admin.post(members, json={"username": "boss", "password": TEST_PASSWORD, "role": "owner"})
    ).status_code == 403
    assert (await admin.patch(f"{members}/{newbie_id}", json={"role": "owner"})).status_code == 403
    assert (await admin.patch(f"{members}/{owner_id}", json={"role": "member"})).status_code == 403
    assert (await admin.delete(f"{members}/{owner_id}")).status_code == 403
    assert (
        await admin.patch(f"{members}/{newbie_id}", json={"role": "admin"})
    ).status_code == 200  # below owner is fine

    demote_self = await owner.patch(f"{members}/{owner_id}", json={"role": "admin"})
    assert demote_self.status_code == 409 and "at least one owner" in demote_self.json()["detail"]
    assert (await owner.delete(f"{members}/{owner_id}")).status_code == 409

    assert (await owner.patch(f"{members}/{newbie_id}", json={"role": "owner"})).json()["role"] == "owner"
    assert (
        await owner.post(members, json={"username": "boss", "password": TEST_PASSWORD, "role": "owner"})
    ).status_code == 201
    assert (await owner.delete(f"{members}/{newbie_id}")).status_code == 204  # owners may remove an owner
    assert (await owner.patch(f"{members}/{owner_id}", json={"role": "admin"})).status_code == 200  # boss still owns it
    listed = {m["username"]: m["role"] for m in (await owner.get(members)).json()}
    assert listed == {"adam": "admin", "boss": "owner", "olga": "admin"}


async def test_removal_and_role_changes_apply_to_the_next_request(clients):
    owner = clients.user("olga", "acme", Role.OWNER)
    viewer = clients.user("vera", "acme", Role.VIEWER)
    leaver = clients.user("lars", "acme", Role.MEMBER)
    org_id = (await me(owner))["org_id"]
    members = f"/api/v1/orgs/{org_id}/members"

    assert (await upload(viewer)).status_code == 403
    vera_id = (await me(viewer))["user_id"]
    assert (await owner.patch(f"{members}/{vera_id}", json={"role": "member"})).status_code == 200
    assert (await upload(viewer)).status_code == 201  # same token, new role
    assert (await me(viewer))["role"] == "member"

    lars_id = (await me(leaver))["user_id"]
    assert (await owner.delete(f"{members}/{lars_id}")).status_code == 204
    gone = await leaver.get("/api/v1/datasets")
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]  # removal ends the member's sessions
    assert (await login(clients, "lars")).status_code == 401  # no organization left to log in to


# --- API keys -------------------------------------------------------------------------------------


async def test_api_keys_are_shown_once_act_within_their_scopes_and_can_be_revoked(clients):
    admin = clients.user("adam", "acme", Role.ADMIN)
    created = await admin.post("/api/v1/api-keys", json={"name": "ci reader", "scopes": ["datasets:read"]})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["secret"].startswith(key["prefix"] + "_") and key["prefix"].startswith("wlk_")
    assert created.headers["location"] == f"/api/v1/api-keys/{key['key_id']}"
    assert key["scopes"] == ["datasets:read"] and key["expires_at"] is not None and key["last_used_at"] is None
    listed = (await admin.get("/api/v1/api-keys")).json()
    assert [k["key_id"] for k in listed] == [key["key_id"]]
    assert (
        "secret" not in listed[0] and key["secret"] not in json.dumps(listed) and listed[0]["prefix"] == key["prefix"]
    )

    program = clients.token(key["secret"])
    assert (await program.get("/api/v1/datasets")).status_code == 200
    refused = await upload(program)
    assert refused.status_code == 403 and "datasets:write" in refused.json()["detail"]
    assert (await program.get("/api/v1/api-keys")).status_code == 403
    assert (
        await program.post("/api/v1/api-keys", json={"name": "child", "scopes": ["datasets:read"]})
    ).status_code == 403
    profile = await me(program)
    assert profile["api_key_id"] == key["key_id"] and profile["scopes"] == ["datasets:read"]
    assert (await admin.get("/api/v1/api-keys")).json()[0]["last_used_at"] is not None

    revoked = await admin.delete(f"/api/v1/api-keys/{key['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    response = await program.get("/api/v1/datasets")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    assert (await admin.delete("/api/v1/api-keys/nope")).status_code == 404

    never = (
        await admin.post(
            "/api/v1/api-keys", json={"name": "forever", "scopes": ["tasks:read"], "expires_in_days": None}
        )
    ).json()
    assert never["expires_at"] is None
    member = clients.user("mia", "acme", Role.MEMBER)
    assert (
        await member.post("/api/v1/api-keys", json={"name": "mine", "scopes": ["datasets:read"]})
    ).status_code == 403


async def test_a_key_shrinks_with_its_creator_s_role(clients):
    owner = clients.user("olga", "acme", Role.OWNER)
    admin = clients.user("adam", "acme", Role.ADMIN)
    key = (
        await admin.post("/api/v1/api-keys", json={"name": "uploader", "scopes": ["datasets:read", "datasets:write"]})
    ).json()
    program = clients.token(key["secret"])
    assert (await upload(program)).status_code == 201

    org_id, adam_id = (await me(owner))["org_id"], (await me(admin))["user_id"]
    assert (await owner.patch(f"/api/v1/orgs/{org_id}/members/{adam_id}", json={"role": "viewer"})).status_code == 200
    assert (await upload(program)).status_code == 403  # the key never outranks its creator
    assert (await program.get("/api/v1/datasets")).status_code == 200
    assert (await me(program))["scopes"] == ["datasets:read"]


# --- audit ----------------------------------------------------------------------------------------


async def test_the_audit_log_records_who_did_what_to_which_resource(clients, offline_settings):
    admin = clients.user("adam", "acme", Role.ADMIN)
    adam_id = (await me(admin))["user_id"]
    dataset = await upload(admin)
    dataset_id = dataset.headers["location"].rsplit("/", 1)[-1]
    assert dataset_id == dataset.json()["dataset_id"]
    task = await admin.post("/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": dataset_id})
    assert task.status_code == 201
    key = (await admin.post("/api/v1/api-keys", json={"name": "k", "scopes": ["datasets:write"]})).json()
    by_key = await upload(clients.token(key["secret"]), "from a program")
    assert (await admin.delete(f"/api/v1/api-keys/{key['key_id']}")).status_code == 200
    assert (await login(clients, "adam", "wrong password")).status_code == 401
    assert (await login(clients, "adam")).status_code == 200
    other = clients.user("olaf", "globex", Role.OWNER)
    assert (await upload(other, "theirs")).status_code == 201

    listing = await admin.get("/api/v1/audit")
    assert listing.status_code == 200, listing.text
    entries = listing.json()["items"]
    assert listing.json()["total"] == len(entries) == 6
    assert all(e["client_ip"] for e in entries) and not any(e["action"].startswith("GET ") for e in entries)

    def entry(action: str, **fields) -> dict:
        found = [e for e in entries if e["action"] == action and all(e[k] == v for k, v in fields.items())]
        assert len(found) == 1, (action, fields, entries)
        return found[0]

    upload_entry = entry("POST /api/v1/datasets", actor_key_id=None)
    assert (
        upload_entry["resource_type"],
        upload_entry["resource_id"],
        upload_entry["status_code"],
        upload_entry["actor_user_id"],
    ) == ("dataset", dataset_id, 201, adam_id)
    assert entry("POST /api/v1/tasks/standard")["resource_id"] == task.json()["task_id"]
    assert entry("POST /api/v1/api-keys")["resource_id"] == key["key_id"]
    key_upload = entry("POST /api/v1/datasets", actor_key_id=key["key_id"])
    assert key_upload["resource_id"] == by_key.json()["dataset_id"] and key_upload["actor_user_id"] == adam_id
    revocation = entry("DELETE /api/v1/api-keys/{key_id}")
    assert (revocation["resource_type"], revocation["resource_id"], revocation["status_code"]) == (
        "api_key",
        key["key_id"],
        200,
    )
    assert entry("POST /api/v1/auth/login")["status_code"] == 200  # the successful one, made in this organization
    newest_first = [e["id"] for e in entries]
    assert newest_first == sorted(newest_first, reverse=True)

    # the failed login is recorded, without an organization (no one was authenticated), so no tenant sees it
    with get_sessionmaker(offline_settings.resolved_database_url)() as session:
        failed = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "POST /api/v1/auth/login", AuditEntry.status_code == 401)
        ).all()
    assert len(failed) == 1 and failed[0].org_id is None and failed[0].actor_user_id is None and failed[0].client_ip

    filtered = (await admin.get("/api/v1/audit", params={"action": "api-keys"})).json()
    assert filtered["total"] == 2 and {e["action"] for e in filtered["items"]} == {
        "POST /api/v1/api-keys",
        "DELETE /api/v1/api-keys/{key_id}",
    }
    paged = (await admin.get("/api/v1/audit", params={"limit": 2, "offset": 1})).json()
    assert [e["id"] for e in paged["items"]] == newest_first[1:3] and paged["total"] == 6

    theirs = (await other.get("/api/v1/audit")).json()["items"]
    assert [e["action"] for e in theirs] == ["POST /api/v1/datasets"] and theirs[0]["resource_id"] not in {
        dataset_id,
        by_key.json()["dataset_id"],
    }
    member = clients.user("mia", "acme", Role.MEMBER)
    assert (await member.get("/api/v1/audit")).status_code == 403


# --- the command line and the development owner -----------------------------------------------------


@pytest.fixture
def cli_settings(tmp_path, monkeypatch):
    """`wlops` reads its settings from the environment: point it at a fresh data dir."""
    monkeypatch.setenv("WLOPS_DATA_DIR", str(tmp_path / "cli"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_wlops_db_upgrade_brings_a_new_database_to_the_latest_migration(cli_settings, capsys):
    from alembic.script import ScriptDirectory

    url = cli_settings.resolved_database_url
    assert not Path(
        url.split("///", 1)[1]
    ).exists()  # building settings (or an app) never creates or migrates a database
    wlops(["db", "upgrade"])
    assert "is up to date" in capsys.readouterr().out
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    with get_engine(url).connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
        columns = {row[1] for row in connection.execute(text("PRAGMA table_info(ml_tasks)"))}
    assert {"org_id", "latest_adapter_key", "latest_evaluation_key", "report_key"} <= columns and "owner" not in columns


async def test_wlops_user_create_makes_and_updates_users(cli_settings, capsys):
    wlops(["user", "create", "alice", "--password", TEST_PASSWORD, "--org", "acme", "--role", "admin"])
    out = capsys.readouterr().out
    assert "created user 'alice'" in out and "admin of new organization 'acme'" in out
    async with anonymous_client(create_app(cli_settings)) as anon:
        first = await anon.post("/api/v1/auth/login", json={"username": "alice", "password": TEST_PASSWORD})
        assert first.status_code == 200 and first.json()["role"] == "admin"

        wlops(["user", "create", "alice", "--password", "a different password", "--org", "acme", "--role", "viewer"])
        out = capsys.readouterr().out
        assert "updated user 'alice'" in out and "viewer of organization 'acme'" in out
        again = await anon.post("/api/v1/auth/login", json={"username": "alice", "password": TEST_PASSWORD})
        assert again.json()["role"] == "viewer"  # the role changed, the password did not
    with get_sessionmaker(cli_settings.resolved_database_url)() as session:
        assert session.scalars(select(Organization.name)).all() == ["acme"]


def test_wlops_user_create_refuses_short_passwords_and_unknown_roles(cli_settings, capsys):
    with pytest.raises(SystemExit) as short:
        wlops(["user", "create", "bob", "--password", "short", "--org", "acme"])
    assert short.value.code != 0 and "password must be at least 8 characters" in str(short.value.code)
    with pytest.raises(SystemExit) as bad_role:
        wlops(["user", "create", "bob", "--password", TEST_PASSWORD, "--org", "acme", "--role", "superuser"])
    assert bad_role.value.code == 2 and "invalid choice: 'superuser'" in capsys.readouterr().err
    with get_sessionmaker(cli_settings.resolved_database_url)() as session:
        assert session.scalars(select(Organization)).all() == []  # the failed create left nothing behind


async def test_the_development_owner(offline_settings, clients):
    dev = offline_settings.model_copy(
        update={"dev_username": "devon", "dev_password": "devon-password", "dev_org": "devhouse"}
    )
    setup = ensure_dev_owner(dev)
    assert setup is not None and setup.role == Role.OWNER and setup.created_user and setup.org.name == "devhouse"
    assert not ensure_dev_owner(dev).created_user  # idempotent
    token = (await login(clients, "devon", "devon-password")).json()
    assert token["role"] == "owner"
    assert ensure_dev_owner(dev.model_copy(update={"environment": "production", "dev_username": "prod-dev"})) is None
    assert (await login(clients, "prod-dev", "devon-password")).status_code == 401


# --- migration 0002 on a database that already has data -------------------------------------------------


async def test_migrations_0002_and_0003_keep_existing_data_reachable(tmp_path, model_cache):
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with get_engine(url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO datasets (id, name, storage_path, file_format, size_bytes, sample_count, owner, "
                "is_optimized, created_at) VALUES ('old-dataset', 'faq', 'datasets/legacy/old-dataset/data.jsonl', "
                "'jsonl', 123, 5, 'legacy', 0, '2024-01-02 03:04:05')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO ml_tasks (id, name, mode, status, model_name, dataset_id, owner, current_iteration, "
                "max_iterations, hyperparameters, created_at, updated_at) VALUES ('old-task', 'tune', 'STANDARD', "
                "'PENDING', 'smollm2-135m-instruct', 'old-dataset', 'legacy', 0, 1, '{}', '2024-01-02 03:04:05', "
                "'2024-01-02 03:04:05')"
            )
        )

    migrate(url)
    with get_sessionmaker(url)() as session:
        org = session.get(Organization, "legacy")
        assert org is not None and org.name == "legacy"
        ensure_user(session, "heir", TEST_PASSWORD, "legacy", Role.MEMBER)
        session.commit()
    migrate(url)  # idempotent

    settings = Settings(
        data_dir=tmp_path / "wlops",
        database_url=url,
        model_cache=model_cache,
        temporal_address=f"127.0.0.1:{free_port()}",
    )
    async with anonymous_client(create_app(settings)) as anon:
        token = (await anon.post("/api/v1/auth/login", json={"username": "heir", "password": TEST_PASSWORD})).json()
        assert token["org_id"] == "legacy"
        anon.headers["Authorization"] = f"Bearer {token['access_token']}"
        datasets = (await anon.get("/api/v1/datasets")).json()
        assert [d["dataset_id"] for d in datasets["items"]] == ["old-dataset"] and datasets["items"][0][
            "org_id"
        ] == "legacy"
        assert (await anon.get("/api/v1/datasets/old-dataset")).json()["created_by"] is None
        assert [t["task_id"] for t in (await anon.get("/api/v1/tasks")).json()["items"]] == ["old-task"]
        assert (await anon.get("/api/v1/orgs/legacy")).json()["storage_bytes"] == 123
