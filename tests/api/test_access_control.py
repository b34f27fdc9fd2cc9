"""Access control, checked from the outside.

1. A walk over every operation of the OpenAPI schema (so a route added later is covered without editing
   this file): anonymous and bogus credentials are 401, another tenant's ids are 404 and its lists show
   nothing of ours, a viewer and a read-only API key are 403 wherever their scopes fall short of the
   route's `authorize(...)` scopes, and allowed wherever they do not.
2. The OWASP API risks that apply: broken object-level authorization, broken authentication, mass
   assignment and unrestricted resource consumption.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from temporalio.service import RPCError

from api.main import ROUTERS, create_app
from api.security import PUBLIC_ROUTES, route_scopes
from api.services.identity import token_pair
from auth.tokens import ACCESS, REFRESH, issue_token
from core.access import API_KEY_SCOPES, ROLE_SCOPES, Role, Scope
from db.models import ApiKey, Dataset, Membership, MLTask, Organization, User, utcnow
from db.session import get_sessionmaker
from tests.conftest import free_port
from tests.e2e.support import TEST_PASSWORD, anonymous_client, client_for

MUTATIONS = {"POST", "PUT", "PATCH", "DELETE"}
GOOD_ROWS = [{"question": f"What is setting {i}?", "answer": f"Setting {i} controls feature {i}."} for i in range(5)]
ID_PARAMS = ("dataset_id", "task_id", "key_id", "org_id", "user_id")


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def db(settings):
    return get_sessionmaker(settings.resolved_database_url)()


@pytest.fixture
def offline_settings(settings):
    """Temporal is not running: routes that need it could only answer 503, never hang."""
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


# --- the operations of the schema -------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    path_params: tuple[str, ...]
    query: dict = field(hash=False, compare=False)
    body: tuple[str, dict] | None = field(hash=False, compare=False)  # (content type, schema)
    scopes: tuple[Scope, ...] | None = field(hash=False, compare=False)  # None: public

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def public(self) -> bool:
        return (self.method, self.path) in PUBLIC_ROUTES


def api_routes(routes) -> dict[tuple[str, str], APIRoute]:
    return {(method, route.path): route for route in routes if isinstance(route, APIRoute) for method in route.methods}


async def schema_operations(app) -> list[Operation]:
    """Every operation of the served /openapi.json, with the scopes its route demands."""
    async with anonymous_client(app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    routes = api_routes([route for router in ROUTERS for route in router.routes] + list(app.routes))
    operations = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            method = method.upper()
            params = op.get("parameters", [])
            body = None
            if "requestBody" in op:
                content_type, content = next(iter(op["requestBody"]["content"].items()))
                body = (content_type, resolve(content["schema"], spec))
            route = routes[(method, path)]
            operations.append(Operation(method, path, tuple(p["name"] for p in params if p["in"] == "path"),
                                        {p["name"]: resolve(p["schema"], spec) for p in params if p["in"] == "query"}, body,
                                        route_scopes(route)))
    app.state.test_spec = spec
    return operations


def resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_counter = itertools.count()


def sample(schema: dict, spec: dict, ids: dict[str, str], name: str = ""):
    """A minimal valid value for `schema`: required fields only, real ids where a field names one."""
    schema = resolve(schema, spec)
    key = snake(name)
    if key in ids:
        return ids[key]
    if key == "name":
        return f"walk-{next(_counter)}"
    if key == "scopes":
        return [Scope.DATASETS_READ.value]
    if key == "role":
        return Role.VIEWER.value
    if key == "password":
        return TEST_PASSWORD
    if "anyOf" in schema:
        return sample(next(s for s in schema["anyOf"] if s.get("type") != "null"), spec, ids, name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {prop: sample(sub, spec, ids, prop) for prop, sub in schema.get("properties", {}).items() if prop in schema.get("required", [])}
    if kind == "array":
        return [sample(schema["items"], spec, ids)] * max(1, schema.get("minItems", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if kind == "string":
        return "x" * max(2, schema.get("minLength", 1))
    raise AssertionError(f"no sample for schema {schema} of {name!r}: teach `sample` about it")


def is_file(schema: dict) -> bool:
    return schema.get("format") == "binary" or "contentMediaType" in schema


def request_kwargs(op: Operation, spec: dict, ids: dict[str, str]) -> dict:
    """Path, and a minimal valid body, for calling `op` with `ids` in its path params and body fields."""
    missing = [p for p in op.path_params if p not in ids]
    assert not missing, f"{op}: no id to put in path params {missing}: add one to the world"
    kwargs: dict = {"url": op.path.format(**{p: ids[p] for p in op.path_params})}
    if op.body:
        content_type, schema = op.body
        if content_type == "application/json":
            kwargs["json"] = sample(schema, spec, ids)
        elif content_type == "multipart/form-data":
            files, data = {}, {}
            for prop, sub in schema["properties"].items():
                if is_file(resolve(sub, spec)):
                    files[prop] = ("walk.jsonl", jsonl(GOOD_ROWS))
                elif prop in schema.get("required", []) or snake(prop) in ids:
                    data[prop] = sample(sub, spec, ids, prop)
            kwargs.update(files=files, data=data)
        else:
            raise AssertionError(f"{op}: unexpected request body type {content_type}")
    return kwargs


async def call(client: httpx.AsyncClient, op: Operation, spec: dict, ids: dict[str, str]) -> httpx.Response:
    kwargs = request_kwargs(op, spec, ids)
    return await client.request(op.method, kwargs.pop("url"), **kwargs)


# --- a world of two tenants --------------------------------------------------------------------


@dataclass
class World:
    app: object
    settings: object
    spec: dict
    operations: list[Operation]
    owner: httpx.AsyncClient  # alice, owner of org A
    viewer: httpx.AsyncClient  # victor, viewer in org A
    other: httpx.AsyncClient  # bob, owner of org B
    reader: httpx.AsyncClient  # an API key of alice's with datasets:read only
    ids: dict[str, str]  # org A's resources, by the path param that names them
    b_ids: dict[str, str]  # org B's own organization and owner
    owner_id: str
    viewer_id: str
    key_secret: str
    key_prefix: str

    @property
    def a_values(self) -> set[str]:
        """What org B must never see in a listing."""
        return set(self.ids.values()) | {self.owner_id, self.viewer_id, self.key_prefix}

    def client_as(self, user_id: str, org_id: str) -> httpx.AsyncClient:
        """A client with a token issued now (after any logout that bumped the user's token version)."""
        with db(self.settings) as session:
            user = session.get(User, user_id)
            role = Role(session.scalar(select(Membership.role).where(Membership.org_id == org_id, Membership.user_id == user_id)))
            token = token_pair(self.settings, user, org_id, role).access_token
        return anonymous_client(self.app, {"Authorization": f"Bearer {token}"})


async def me(client) -> dict:
    response = await client.get("/api/v1/auth/me")
    assert response.status_code == 200, response.text
    return response.json()


async def make_world(settings) -> World:
    app = create_app(settings)
    owner = client_for(app, settings, "alice", "org-a", Role.OWNER)
    viewer = client_for(app, settings, "victor", "org-a", Role.VIEWER)
    other = client_for(app, settings, "bob", "org-b", Role.OWNER)
    alice, victor, bob = await me(owner), await me(viewer), await me(other)
    dataset = await owner.post("/api/v1/datasets", files={"file": ("a.jsonl", jsonl(GOOD_ROWS))}, data={"name": "a-data"})
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["dataset_id"]
    task = await owner.post("/api/v1/tasks/standard", json={"task_name": "a-task", "dataset_id": dataset_id})
    assert task.status_code == 201, task.text
    key = await owner.post("/api/v1/api-keys", json={"name": "reader", "scopes": ["datasets:read"]})
    assert key.status_code == 201, key.text
    key = key.json()
    operations = await schema_operations(app)
    ids = {"dataset_id": dataset_id, "task_id": task.json()["task_id"], "key_id": key["key_id"], "org_id": alice["org_id"], "user_id": victor["user_id"]}
    return World(app, settings, app.state.test_spec, operations, owner, viewer, other,
                 anonymous_client(app, {"Authorization": f"Bearer {key['secret']}"}), ids,
                 {"org_id": bob["org_id"], "user_id": bob["user_id"]}, alice["user_id"], victor["user_id"], key["secret"], key["prefix"])


@pytest.fixture
async def world(offline_settings):
    world = await make_world(offline_settings)
    yield world
    for client in (world.owner, world.viewer, world.other, world.reader):
        await client.aclose()


async def assert_org_a_untouched(world: World) -> None:
    """Org A's resources are as `make_world` left them."""
    owner = world.client_as(world.owner_id, world.ids["org_id"])
    assert (await owner.get(f"/api/v1/datasets/{world.ids['dataset_id']}")).json()["owner"] == world.ids["org_id"]
    assert (await owner.get(f"/api/v1/tasks/{world.ids['task_id']}")).json()["status"] == "PENDING"
    assert (await owner.get(f"/api/v1/orgs/{world.ids['org_id']}")).json()["name"] == "org-a"
    members = {m["user_id"]: m["role"] for m in (await owner.get(f"/api/v1/orgs/{world.ids['org_id']}/members")).json()}
    assert members == {world.owner_id: "owner", world.viewer_id: "viewer"}
    keys = (await owner.get("/api/v1/api-keys")).json()
    assert [(k["key_id"], k["revoked_at"]) for k in keys] == [(world.ids["key_id"], None)]
    assert (await world.reader.get("/api/v1/datasets")).status_code == 200
    with db(world.settings) as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 1
        assert session.scalar(select(func.count()).select_from(MLTask)) == 1
    await owner.aclose()


# --- 1. the route walk -------------------------------------------------------------------------


async def test_the_schema_lists_every_route_and_each_one_is_authorized(offline_settings):
    app = create_app(offline_settings)
    operations = {(op.method, op.path): op for op in await schema_operations(app)}
    in_routers = api_routes(route for router in ROUTERS for route in router.routes)
    assert set(in_routers) - set(operations) == set(), "routes missing from the OpenAPI schema (include_in_schema=False?)"
    assert PUBLIC_ROUTES <= set(operations)
    spec = app.state.test_spec
    for key, op in operations.items():
        if op.public:
            assert op.scopes is None and "security" not in spec["paths"][op.path][op.method.lower()], op
        else:
            assert op.scopes is not None, f"{op} has no authorize(...)"
            assert spec["paths"][op.path][op.method.lower()].get("security") == [{"HTTPBearer": []}], f"{op} does not document bearer auth"
    # A mutation open to any authenticated caller must be a deliberate decision: today, only these two.
    unscoped_mutations = {key for key, op in operations.items() if key[0] in MUTATIONS and op.scopes == ()}
    assert unscoped_mutations == {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/orgs")}
    # A viewer reads: every mutation that needs a scope needs one a viewer lacks.
    for op in operations.values():
        if op.method in MUTATIONS and op.scopes:
            assert not set(op.scopes) <= ROLE_SCOPES[Role.VIEWER], f"a viewer could call {op}"


BAD_CREDENTIALS = {
    "none": {},
    "garbage bearer": {"Authorization": "Bearer garbage"},
    "empty bearer": {"Authorization": "Bearer "},
    "basic auth": {"Authorization": "Basic " + base64.b64encode(b"alice:" + TEST_PASSWORD.encode()).decode()},
    "made-up API key": {"Authorization": "Bearer wlk_0123456789ab_" + "A" * 43},
    "JWT signed by someone else": {"Authorization": "Bearer " + jwt.encode({"sub": "u", "org": "o", "typ": "access", "ver": 0, "iat": 0, "exp": 4102444800}, "x" * 40)},
}


async def test_every_protected_operation_is_401_without_valid_credentials(offline_settings):
    app = create_app(offline_settings)
    operations = await schema_operations(app)
    ids = {name: "nope" for name in ID_PARAMS}
    protected = [op for op in operations if not op.public]
    assert len(protected) >= 25
    for label, headers in BAD_CREDENTIALS.items():
        async with anonymous_client(app, headers) as client:
            for op in protected:
                response = await call(client, op, app.state.test_spec, ids)
                assert response.status_code == 401, f"{label}: {op} answered {response.status_code} {response.text}"
                assert response.headers.get("www-authenticate") == "Bearer", f"{label}: {op}"
                assert response.json()["detail"], op
                if op.body and op.body[0] == "application/json":  # authentication comes before body validation
                    response = await client.request(op.method, request_kwargs(op, app.state.test_spec, ids)["url"], json={"unexpected": 1})
                    assert response.status_code == 401, f"{label}: {op} with an invalid body answered {response.status_code}"
    async with anonymous_client(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.post("/api/v1/auth/login", json={"username": "nobody", "password": "wrong-password"})).status_code == 401
        assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": "garbage"})).status_code == 401


async def test_another_tenant_gets_404_for_every_id_and_sees_nothing_in_lists(world):
    # lists first (B's own audit log is empty of A's ids until B itself names them in failed requests)
    listings = [op for op in world.operations if op.method == "GET" and not op.public and set(op.path_params) <= set(world.b_ids)]
    assert {op.path for op in listings} >= {"/api/v1/datasets", "/api/v1/tasks", "/api/v1/api-keys", "/api/v1/audit", "/api/v1/orgs/{org_id}/members"}
    for op in listings:
        response = await call(world.other, op, world.spec, world.b_ids)
        assert response.status_code == 200, f"{op}: {response.status_code} {response.text}"
        leaked = [value for value in world.a_values if value in response.text]
        assert not leaked, f"{op} shows org A's {leaked} to org B"

    by_id = []
    for op in world.operations:
        if op.public:
            continue
        kwargs = request_kwargs(op, world.spec, world.ids)
        names_a_resource = bool(op.path_params) or any(v in json.dumps(kwargs.get("json", {})) + json.dumps(kwargs.get("data", {}))
                                                       for v in world.ids.values())
        if names_a_resource:
            by_id.append(op)
            response = await call(world.other, op, world.spec, world.ids)
            assert response.status_code == 404, f"{op} with org A's ids: {response.status_code} {response.text}"
            assert "not found" in response.json()["detail"]
            if "org_id" in op.path_params and len(op.path_params) > 1:  # B's own organization, A's resource inside it
                response = await call(world.other, op, world.spec, {**world.ids, "org_id": world.b_ids["org_id"]})
                assert response.status_code == 404, f"{op} in org B with org A's ids: {response.status_code} {response.text}"
    assert {str(op) for op in by_id} >= {"DELETE /api/v1/api-keys/{key_id}", "POST /api/v1/tasks/standard", "POST /api/v1/tasks/{task_id}/cancel",
                                         "DELETE /api/v1/orgs/{org_id}/members/{user_id}", "PATCH /api/v1/orgs/{org_id}"}
    await assert_org_a_untouched(world)


def check_walk(op: Operation, response: httpx.Response, forbidden: bool, who: str) -> None:
    if forbidden:
        assert response.status_code == 403, f"{who}: {op} needs {op.scopes}, answered {response.status_code} {response.text}"
        assert "requires" in response.json()["detail"] or "API keys cannot" in response.json()["detail"], response.text
    else:
        assert response.status_code not in (401, 403) and response.status_code < 500, f"{who}: {op} answered {response.status_code} {response.text}"


async def test_a_viewer_is_forbidden_exactly_what_its_role_lacks(world):
    viewer_scopes = ROLE_SCOPES[Role.VIEWER]
    protected = [op for op in world.operations if not op.public]
    # forbidden ones first, then reads, then the mutations any caller may do (each with a token issued
    # just before it, since one of them may be logout)
    ordered = sorted(protected, key=lambda op: (set(op.scopes) <= viewer_scopes, op.method in MUTATIONS))
    allowed_mutations = []
    for op in ordered:
        forbidden = not set(op.scopes) <= viewer_scopes
        if op.method in MUTATIONS and not forbidden:
            allowed_mutations.append(str(op))
            async with world.client_as(world.viewer_id, world.ids["org_id"]) as client:
                response = await call(client, op, world.spec, world.ids)
        else:
            response = await call(world.viewer, op, world.spec, world.ids)
        check_walk(op, response, forbidden, "viewer")
    assert sorted(allowed_mutations) == ["POST /api/v1/auth/logout", "POST /api/v1/orgs"]
    await assert_org_a_untouched(world)


async def test_a_read_only_api_key_is_forbidden_everything_but_dataset_reads(world):
    granted = {Scope.DATASETS_READ}
    allowed = []
    for op in [op for op in world.operations if not op.public]:
        if op.method in MUTATIONS and not op.scopes:
            forbidden = True  # creating organizations and logging out are for people, not programs
        else:
            forbidden = not set(op.scopes) <= granted
        response = await call(world.reader, op, world.spec, world.ids)
        check_walk(op, response, forbidden, "datasets:read key")
        if not forbidden:
            allowed.append(str(op))
            assert response.status_code == 200, f"{op}: {response.status_code} {response.text}"
    assert set(allowed) >= {"GET /api/v1/datasets", "GET /api/v1/datasets/{dataset_id}", "GET /api/v1/datasets/{dataset_id}/preview"}
    assert (await world.reader.get("/api/v1/auth/me")).json()["scopes"] == ["datasets:read"]
    await assert_org_a_untouched(world)
    assert (await world.owner.get("/api/v1/auth/me")).status_code == 200, "the key logged its creator out"


# --- 2a. broken object-level authorization ---------------------------------------------------


async def test_org_b_cannot_reach_org_a_tasks_datasets_keys_members_or_audit(world):
    b, ids = world.other, world.ids
    for method, path in [("GET", f"/api/v1/tasks/{ids['task_id']}"), ("GET", f"/api/v1/tasks/{ids['task_id']}/executions"),
                         ("GET", f"/api/v1/tasks/{ids['task_id']}/report"), ("POST", f"/api/v1/tasks/{ids['task_id']}/start"),
                         ("POST", f"/api/v1/tasks/{ids['task_id']}/pause"), ("POST", f"/api/v1/tasks/{ids['task_id']}/resume"),
                         ("POST", f"/api/v1/tasks/{ids['task_id']}/cancel"), ("GET", f"/api/v1/datasets/{ids['dataset_id']}"),
                         ("GET", f"/api/v1/datasets/{ids['dataset_id']}/preview"), ("DELETE", f"/api/v1/api-keys/{ids['key_id']}"),
                         ("GET", f"/api/v1/orgs/{ids['org_id']}"), ("GET", f"/api/v1/orgs/{ids['org_id']}/members"),
                         ("DELETE", f"/api/v1/orgs/{ids['org_id']}/members/{world.viewer_id}")]:
        response = await b.request(method, path)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
    for mode in ("standard", "continuous"):
        response = await b.post(f"/api/v1/tasks/{mode}", json={"task_name": "steal", "dataset_id": ids["dataset_id"]})
        assert response.status_code == 404 and f"dataset {ids['dataset_id']} not found" in response.json()["detail"]
    response = await b.patch(f"/api/v1/orgs/{ids['org_id']}/members/{world.viewer_id}", json={"role": "owner"})
    assert response.status_code == 404
    response = await b.post(f"/api/v1/orgs/{ids['org_id']}/members", json={"username": "bob", "role": "owner"})
    assert response.status_code == 404
    assert (await b.patch(f"/api/v1/orgs/{ids['org_id']}", json={"name": "pwned"})).status_code == 404
    # B's lists are its own; A's audit log holds nothing of B's probing, B's holds nothing of A's work
    assert (await b.get("/api/v1/tasks")).json()["total"] == 0
    assert (await b.get("/api/v1/datasets")).json()["total"] == 0
    assert (await b.get("/api/v1/api-keys")).json() == []
    b_audit = (await b.get("/api/v1/audit", params={"limit": 200})).json()["items"]
    assert b_audit and {e["actor_user_id"] for e in b_audit} == {world.b_ids["user_id"]}
    probe = next(e for e in b_audit if e["action"] == "DELETE /api/v1/api-keys/{key_id}")  # failed probes are audited, in B's log
    assert (probe["resource_type"], probe["resource_id"], probe["status_code"]) == ("api_key", ids["key_id"], 404)
    a_audit = (await world.owner.get("/api/v1/audit", params={"limit": 200})).json()["items"]
    assert a_audit and {e["actor_user_id"] for e in a_audit} == {world.owner_id}
    await assert_org_a_untouched(world)


# --- 2b. broken authentication --------------------------------------------------------------


def forge(header: dict, payload: dict, signature: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)])


async def assert_401(app, token: str, path: str = "/api/v1/auth/me", message: str | None = None) -> None:
    async with anonymous_client(app, {"Authorization": f"Bearer {token}"}) as client:
        response = await client.get(path)
    assert response.status_code == 401, f"{response.status_code} {response.text}"
    assert response.headers["www-authenticate"] == "Bearer"
    if message:
        assert message in response.json()["detail"], response.text


async def assert_refresh_401(app, token: str) -> None:
    async with anonymous_client(app) as client:
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert response.status_code == 401, f"{response.status_code} {response.text}"


async def test_expired_tampered_forged_and_wrong_type_tokens_are_401(world):
    s, user, org = world.settings, world.owner_id, world.ids["org_id"]
    good, _ = issue_token(s.secret_key, user, org, ACCESS, 0, timedelta(minutes=5))
    async with anonymous_client(world.app, {"Authorization": f"Bearer {good}"}) as client:
        assert (await client.get("/api/v1/auth/me")).status_code == 200  # the control
    expired, _ = issue_token(s.secret_key, user, org, ACCESS, 0, timedelta(seconds=-30))
    await assert_401(world.app, expired, message="expired")

    head, payload, signature = good.split(".")
    i = len(payload) // 2
    tampered = ".".join([head, payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1:], signature])
    await assert_401(world.app, tampered)
    claims = jwt.decode(good, s.secret_key, algorithms=["HS256"])
    await assert_401(world.app, jwt.encode(claims, "another-secret-of-at-least-32-characters!", algorithm="HS256"))
    await assert_401(world.app, forge({"alg": "none", "typ": "JWT"}, claims))
    await assert_401(world.app, forge({"alg": "none", "typ": "JWT"}, claims)[:-1])  # no trailing dot either
    await assert_401(world.app, forge({"alg": "HS256", "typ": "JWT"}, claims))  # no signature
    # signed with the real secret, but for a user or an organization that does not fit
    await assert_401(world.app, issue_token(s.secret_key, "no-such-user", org, ACCESS, 0, timedelta(minutes=5))[0])
    await assert_401(world.app, issue_token(s.secret_key, user, world.b_ids["org_id"], ACCESS, 0, timedelta(minutes=5))[0], message="member")
    await assert_401(world.app, issue_token(s.secret_key, user, org, ACCESS, 7, timedelta(minutes=5))[0], message="revoked")

    refresh, _ = issue_token(s.secret_key, user, org, REFRESH, 0, timedelta(days=1))
    await assert_401(world.app, refresh, message="expected an access token")
    await assert_refresh_401(world.app, good)
    await assert_refresh_401(world.app, issue_token(s.secret_key, user, org, REFRESH, 0, timedelta(seconds=-30))[0])
    async with anonymous_client(world.app) as client:  # the control: a real refresh token works
        assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})).status_code == 200


async def login(app, username: str, password: str = TEST_PASSWORD, **extra) -> httpx.Response:
    async with anonymous_client(app) as client:
        return await client.post("/api/v1/auth/login", json={"username": username, "password": password, **extra})


async def test_logout_revokes_the_access_and_refresh_tokens(world):
    response = await login(world.app, "victor")
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["role"] == "viewer" and pair["org_id"] == world.ids["org_id"]
    async with anonymous_client(world.app, {"Authorization": f"Bearer {pair['access_token']}"}) as client:
        assert (await client.get("/api/v1/datasets")).status_code == 200
        assert (await client.post("/api/v1/auth/logout")).status_code == 204
    await assert_401(world.app, pair["access_token"], message="revoked")
    await assert_401(world.app, pair["access_token"], path="/api/v1/datasets")
    await assert_refresh_401(world.app, pair["refresh_token"])
    await assert_401(world.app, world.viewer.headers["authorization"].split()[1])  # every earlier token, not just this pair
    again = (await login(world.app, "victor")).json()
    await assert_401(world.app, pair["access_token"])
    async with anonymous_client(world.app, {"Authorization": f"Bearer {again['access_token']}"}) as client:
        assert (await client.get("/api/v1/datasets")).status_code == 200


async def test_removed_members_and_their_keys_lose_access_and_keys_never_outrank_their_creator(world):
    org = world.ids["org_id"]
    created = await world.owner.post(f"/api/v1/orgs/{org}/members", json={"username": "adam", "role": "admin", "password": TEST_PASSWORD})
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
    assert (await world.owner.patch(f"/api/v1/orgs/{org}/members/{adam_id}", json={"role": "viewer"})).status_code == 200
    denied = await program.post("/api/v1/tasks/standard", json=body)
    assert denied.status_code == 403 and "tasks:write" in denied.json()["detail"]
    assert (await program.get("/api/v1/datasets")).status_code == 200
    assert (await adam.get("/api/v1/api-keys")).status_code == 403  # the role is read per request, not from the token

    assert (await world.owner.delete(f"/api/v1/orgs/{org}/members/{adam_id}")).status_code == 204
    await assert_401(world.app, pair["access_token"], message="revoked")  # removal ends the member's sessions
    await assert_refresh_401(world.app, pair["refresh_token"])
    await assert_401(world.app, key.json()["secret"], path="/api/v1/datasets", message="revoked")  # removal revokes the member's keys
    assert (await login(world.app, "adam")).status_code == 401
    # added back, the old tokens stay dead: removal bumped the user's token version
    assert (await world.owner.post(f"/api/v1/orgs/{org}/members", json={"username": "adam", "role": "member"})).status_code == 201
    await assert_401(world.app, pair["access_token"], message="revoked")
    await assert_401(world.app, key.json()["secret"], path="/api/v1/datasets", message="revoked")
    await adam.aclose()
    await program.aclose()


async def test_revoked_expired_and_wrong_secret_api_keys_are_401_and_use_is_recorded(world):
    keys = (await world.owner.get("/api/v1/api-keys")).json()
    assert keys[0]["last_used_at"] is None and world.key_prefix.startswith("wlk_") and world.key_secret.startswith(world.key_prefix + "_")
    assert (await world.reader.get("/api/v1/datasets")).status_code == 200
    listed = await world.owner.get("/api/v1/api-keys")
    assert listed.json()[0]["last_used_at"] is not None
    assert world.key_secret not in listed.text and "secret" not in listed.json()[0]  # shown once, at creation

    # right prefix, wrong secret of the right shape
    secret = world.key_secret[len(world.key_prefix) + 1:]
    wrong = world.key_prefix + "_" + ("A" if secret[0] != "A" else "B") + secret[1:]
    await assert_401(world.app, wrong, path="/api/v1/datasets", message="invalid")
    await assert_401(world.app, world.key_secret + "x", path="/api/v1/datasets")

    other = (await world.owner.post("/api/v1/api-keys", json={"name": "soon-expired", "scopes": ["datasets:read"]})).json()
    with db(world.settings) as session:
        session.get(ApiKey, other["key_id"]).expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    await assert_401(world.app, other["secret"], path="/api/v1/datasets", message="expired")

    revoked = await world.owner.delete(f"/api/v1/api-keys/{world.ids['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    await assert_401(world.app, world.key_secret, path="/api/v1/datasets", message="revoked")
    assert (await world.owner.delete(f"/api/v1/api-keys/{world.ids['key_id']}")).status_code == 200  # idempotent


async def test_login_gives_one_message_for_unknown_users_and_wrong_passwords_and_is_throttled(offline_settings):
    settings = offline_settings.model_copy(update={"login_failures_per_minute": 3})
    app = create_app(settings)
    client_for(app, settings, "alice", "org-a", Role.OWNER)
    client_for(app, settings, "victor", "org-a", Role.VIEWER)
    unknown, wrong = await login(app, "mallory", "whatever-password"), await login(app, "alice", "wrong-password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json() == {"detail": "wrong username or password"}
    assert unknown.headers["www-authenticate"] == "Bearer"
    assert (await login(app, "alice", "wrong-password")).status_code == 401
    assert (await login(app, "alice", "wrong-password")).status_code == 401
    throttled = await login(app, "alice")  # the right password, after 3 failures
    assert throttled.status_code == 429 and "at most 3 per minute" in throttled.json()["detail"]
    assert (await login(app, "victor")).status_code == 200  # another account is not locked out
    # the login body cannot choose a role
    response = await login(app, "victor", role="owner")
    assert response.status_code == 422 and any("role" in map(str, e["loc"]) for e in response.json()["detail"])


# --- 2c. mass assignment -----------------------------------------------------------------------


def names_field(response: httpx.Response, name: str) -> bool:
    return response.status_code == 422 and any(name in map(str, error["loc"]) for error in response.json()["detail"])


async def test_task_and_dataset_creation_ignore_or_refuse_server_owned_fields(world):
    ids = world.ids
    base = {"task_name": "t", "dataset_id": ids["dataset_id"]}
    server_owned = {"owner": world.b_ids["org_id"], "org_id": world.b_ids["org_id"], "status": "COMPLETED", "latest_score": 1.0,
                    "task_id": "chosen-id", "created_by": world.b_ids["user_id"], "started_at": "2020-01-01T00:00:00Z",
                    "report_path": "/etc/passwd", "current_iteration": 3}
    for mode in ("standard", "continuous"):
        for name, value in server_owned.items():
            response = await world.owner.post(f"/api/v1/tasks/{mode}", json={**base, name: value})
            assert names_field(response, name), f"{mode} {name}: {response.status_code} {response.text}"
    with db(world.settings) as session:
        assert session.scalar(select(func.count()).select_from(MLTask)) == 1

    form = {"name": "mine", "owner": world.b_ids["org_id"], "org_id": world.b_ids["org_id"], "created_by": world.b_ids["user_id"],
            "dataset_id": "chosen-id", "task_id": ids["task_id"], "is_optimized": "true", "source_dataset_id": ids["dataset_id"],
            "size_bytes": "1", "sample_count": "999"}
    response = await world.owner.post("/api/v1/datasets", files={"file": ("m.jsonl", jsonl(GOOD_ROWS))}, data=form)
    assert response.status_code == 201, response.text
    body = response.json()
    with db(world.settings) as session:
        stored = session.get(Dataset, body["dataset_id"])
        assert (stored.owner, stored.created_by, stored.task_id, stored.is_optimized, stored.source_dataset_id, stored.sample_count) == \
               (ids["org_id"], world.owner_id, None, False, None, 5)
        assert stored.id != "chosen-id" and session.get(Dataset, "chosen-id") is None
        assert stored.storage_path.startswith(f"datasets/{ids['org_id']}/")
    assert (await world.other.get("/api/v1/datasets")).json()["total"] == 0


async def test_keys_members_and_orgs_refuse_fields_and_scopes_clients_may_not_set(world):
    org, owner = world.ids["org_id"], world.owner
    for scope in sorted(set(Scope) - API_KEY_SCOPES):
        response = await owner.post("/api/v1/api-keys", json={"name": "k", "scopes": ["datasets:read", scope.value]})
        assert response.status_code == 422 and scope.value in json.dumps(response.json()), f"{scope}: {response.text}"
    assert (await owner.post("/api/v1/api-keys", json={"name": "k", "scopes": ["admin:everything"]})).status_code == 422
    for name, value in {"created_by": world.b_ids["user_id"], "org_id": world.b_ids["org_id"], "prefix": "0123456789ab",
                        "secret": "wlk_x", "last_used_at": "2020-01-01T00:00:00Z", "revoked_at": None}.items():
        response = await owner.post("/api/v1/api-keys", json={"name": "k", "scopes": ["datasets:read"], name: value})
        assert names_field(response, name), f"api key {name}: {response.text}"
    for name, value in {"org_id": world.b_ids["org_id"], "user_id": world.b_ids["user_id"], "created_at": "2020-01-01T00:00:00Z"}.items():
        response = await owner.post(f"/api/v1/orgs/{org}/members", json={"username": "bob", name: value})
        assert names_field(response, name), f"member {name}: {response.text}"
        response = await owner.patch(f"/api/v1/orgs/{org}/members/{world.viewer_id}", json={"role": "member", name: value})
        assert names_field(response, name), f"member update {name}: {response.text}"
    for name, value in {"owner": world.b_ids["user_id"], "org_id": "chosen", "max_storage_bytes": 10**15, "max_running_tasks": 1000}.items():
        response = await owner.post("/api/v1/orgs", json={"name": "new-org", name: value})
        assert names_field(response, name), f"org {name}: {response.text}"
        response = await owner.patch(f"/api/v1/orgs/{org}", json={"name": "renamed", name: value})
        assert names_field(response, name), f"org update {name}: {response.text}"
    with db(world.settings) as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1
        assert session.scalar(select(func.count()).select_from(Organization)) == 2
        assert session.scalar(select(func.count()).select_from(User)) == 3
    # the only key is still the original datasets:read one; nothing else changed either
    assert [k["scopes"] for k in (await owner.get("/api/v1/api-keys")).json()] == [["datasets:read"]]
    await assert_org_a_untouched(world)


# --- 2d. unrestricted resource consumption ------------------------------------------------------


async def raw_request(app, method: str, path: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, dict]:
    """Drive the ASGI app directly, so the Content-Length header can lie and the body can arrive in chunks."""
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000), "server": ("wlops", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def token_header(client: httpx.AsyncClient) -> dict[str, str]:
    return {"authorization": client.headers["authorization"]}


async def test_json_bodies_over_the_request_limit_are_413_however_they_arrive(offline_settings):
    settings = offline_settings.model_copy(update={"max_request_bytes": 1024})
    app = create_app(settings)
    owner = client_for(app, settings, "alice", "org-a", Role.OWNER)
    big = json.dumps({"name": "x" * 2000}).encode()
    response = await owner.post("/api/v1/orgs", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "1024 byte limit" in response.json()["detail"]
    headers = {**token_header(owner), "content-type": "application/json"}
    pieces = [big[i:i + 300] for i in range(0, len(big), 300)]
    for label, extra in {"lying Content-Length": {"content-length": "20"}, "chunked": {"transfer-encoding": "chunked"}}.items():
        status, body = await raw_request(app, "POST", "/api/v1/orgs", {**headers, **extra}, pieces)
        assert status == 413 and "1024 byte limit" in body["detail"], f"{label}: {status} {body}"
    status, _ = await raw_request(app, "POST", "/api/v1/orgs", {**headers, "content-length": "lots"}, [b'{"name": "n"}'])
    assert status in (400, 413)
    # the limit applies before authentication too, and a body under it is fine
    async with anonymous_client(app) as anonymous:
        assert (await anonymous.post("/api/v1/auth/login", content=big, headers={"content-type": "application/json"})).status_code == 413
    assert (await owner.post("/api/v1/orgs", json={"name": "small"})).status_code == 201
    with db(settings) as session:
        assert sorted(session.scalars(select(Organization.name))) == ["org-a", "small"]
    await owner.aclose()


def nothing_stored(settings, datasets: int = 0) -> bool:
    with db(settings) as session:
        rows = session.scalar(select(func.count()).select_from(Dataset))
    files = [p for p in settings.object_store_dir.rglob("*") if p.is_file()] if settings.object_store_dir.exists() else []
    return rows == datasets and len(files) == datasets


def multipart(boundary: str, filename: str, content: bytes) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()


async def test_uploads_over_size_rows_or_line_limits_are_refused_and_leave_nothing(offline_settings):
    settings = offline_settings.model_copy(update={"max_upload_bytes": 2000, "max_upload_rows": 3, "max_line_bytes": 1024})
    app = create_app(settings)
    owner = client_for(app, settings, "alice", "org-a", Role.OWNER)

    async def upload(name: str, content: bytes) -> httpx.Response:
        return await owner.post("/api/v1/datasets", files={"file": (name, content)}, data={"name": "d"})

    many = jsonl(GOOD_ROWS * 60)
    assert 2000 < len(many) < 64 * 1024
    response = await upload("big.jsonl", many)  # over max_upload_bytes, within the multipart allowance: the service counts
    assert response.status_code == 413 and "2000 byte limit" in response.json()["detail"]
    assert nothing_stored(settings)
    huge = jsonl(GOOD_ROWS * 2000)
    assert len(huge) > 2000 + 64 * 1024
    response = await upload("huge.jsonl", huge)  # over the whole allowance: refused by Content-Length up front
    assert response.status_code == 413 and "byte limit" in response.json()["detail"]
    assert nothing_stored(settings)
    body = multipart("b0undary", "huge.jsonl", huge)
    headers = {**token_header(owner), "content-type": "multipart/form-data; boundary=b0undary"}
    pieces = [body[i:i + 16384] for i in range(0, len(body), 16384)]
    for label, extra in {"lying Content-Length": {"content-length": "300"}, "chunked": {"transfer-encoding": "chunked"}}.items():
        status, detail = await raw_request(app, "POST", "/api/v1/datasets", {**headers, **extra}, pieces)
        assert status == 413 and "byte limit" in detail["detail"], f"{label}: {status} {detail}"
        assert nothing_stored(settings)

    response = await upload("rows.jsonl", jsonl(GOOD_ROWS))  # 5 rows, 3 allowed
    assert response.status_code == 422 and "too many rows (more than 3)" in response.json()["detail"]
    assert nothing_stored(settings)
    long_line = jsonl(GOOD_ROWS[:2]) + json.dumps({"question": "q", "answer": "a" * 1100}).encode() + b"\n"
    response = await upload("long.jsonl", long_line)
    assert response.status_code == 422 and "line 3" in response.json()["detail"] and "1024 byte limit" in response.json()["detail"]
    assert nothing_stored(settings)
    response = await upload("long.csv", b"question,answer\nq," + b"a" * 1100 + b"\n")
    assert response.status_code == 422 and "line 2" in response.json()["detail"]
    assert nothing_stored(settings)
    assert (await upload("ok.jsonl", jsonl(GOOD_ROWS[:3]))).status_code == 201  # the control
    assert nothing_stored(settings, datasets=1)
    await owner.aclose()


async def test_every_limit_query_param_is_bounded(world):
    checked = []
    for op in world.operations:
        if op.method != "GET" or "limit" not in op.query:
            continue
        schema = op.query["limit"]
        assert schema.get("maximum", float("inf")) <= 200 and schema.get("minimum", 0) >= 1, f"{op}: unbounded limit {schema}"
        url = request_kwargs(op, world.spec, world.ids)["url"]
        for params in ({"limit": schema["maximum"] + 1}, {"limit": 201}, {"limit": 10_000}, {"limit": 0}, {"limit": -1}):
            response = await world.owner.get(url, params=params)
            assert names_field(response, "limit"), f"{op} {params}: {response.status_code} {response.text}"
        if "offset" in op.query:
            assert names_field(await world.owner.get(url, params={"offset": -1}), "offset")
        assert (await world.owner.get(url, params={"limit": schema["maximum"]})).status_code == 200
        checked.append(op.path)
    assert set(checked) >= {"/api/v1/datasets", "/api/v1/tasks", "/api/v1/audit"}


async def test_the_storage_quota_is_409_with_the_limit_and_stores_nothing(offline_settings):
    content = jsonl(GOOD_ROWS)
    settings = offline_settings.model_copy(update={"max_storage_bytes_per_org": len(content) * 2 - 1})
    app = create_app(settings)
    owner = client_for(app, settings, "alice", "org-a", Role.OWNER)
    other = client_for(app, settings, "bob", "org-b", Role.OWNER)
    upload = {"files": {"file": ("q.jsonl", content)}, "data": {"name": "q"}}
    assert (await owner.post("/api/v1/datasets", **upload)).status_code == 201
    response = await owner.post("/api/v1/datasets", **upload)
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "storage quota" in detail and f"the limit is {settings.max_storage_bytes_per_org} bytes" in detail
    assert nothing_stored(settings, datasets=1)
    org = (await owner.get("/api/v1/auth/me")).json()["org_id"]
    assert (await owner.get(f"/api/v1/orgs/{org}")).json()["storage_bytes"] == len(content)
    assert (await other.post("/api/v1/datasets", **upload)).status_code == 201  # the quota is per organization
    await owner.aclose()
    await other.aclose()


async def test_the_running_task_quota_is_429_and_restarting_is_not_blocked(temporal_env, settings):
    online = settings.model_copy(update={"temporal_address": temporal_env.client.service_client.config.target_host,
                                         "max_running_tasks_per_org": 1})
    app = create_app(online)
    owner = client_for(app, online, "alice", "org-a", Role.OWNER)
    dataset = (await owner.post("/api/v1/datasets", files={"file": ("q.jsonl", jsonl(GOOD_ROWS))}, data={"name": "q"})).json()
    first, second = [(await owner.post("/api/v1/tasks/standard", json={"task_name": n, "dataset_id": dataset["dataset_id"]})).json()["task_id"]
                     for n in ("first", "second")]
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
            try:
                await temporal_env.client.get_workflow_handle(task_id).terminate("access-control test over")
            except RPCError:
                pass  # never started
        await owner.aclose()
