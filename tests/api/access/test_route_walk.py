"""The walk over every operation of the OpenAPI schema: authentication, tenancy, roles, API key scopes, limits."""

from __future__ import annotations

import base64
import json

import httpx
import jwt

from api.main import ROUTERS, create_app
from api.middleware import MUTATIONS, READ_ONLY_ROUTES
from api.security import PUBLIC_ROUTES
from core.access import ROLE_SCOPES, Role, Scope
from testkit.api import TEST_PASSWORD, anonymous_client
from testkit.world import (
    Operation,
    api_routes,
    assert_org_a_untouched,
    call,
    names_field,
    request_kwargs,
    schema_operations,
)

ID_PARAMS = (
    "dataset_id",
    "task_id",
    "key_id",
    "org_id",
    "user_id",
    "kb_id",
    "document_id",
    "erasure_id",
    "model_name",
    "version",
    "alias",
    "gate_id",
    "entry_id",
    "iteration",
    "node_id",
    "kind",
    "suite_name",
    "run_id",
    "release_id",
)


def mutates(op: Operation) -> bool:
    """Whether the operation may change something (a POST that only reads, like a search, does not)."""
    return op.method in MUTATIONS and (op.method, op.path) not in READ_ONLY_ROUTES


async def test_the_schema_lists_every_route_and_each_one_is_authorized(offline_settings):
    app = create_app(offline_settings)
    operations = {(op.method, op.path): op for op in await schema_operations(app)}
    in_routers = api_routes(route for router in ROUTERS for route in router.routes)
    assert set(in_routers) - set(operations) == set(), (
        "routes missing from the OpenAPI schema (include_in_schema=False?)"
    )
    assert set(operations) >= PUBLIC_ROUTES
    spec = app.state.test_spec
    for op in operations.values():
        if op.public:
            assert op.scopes is None and "security" not in spec["paths"][op.path][op.method.lower()], op
        else:
            assert op.scopes is not None, f"{op} has no authorize(...)"
            assert spec["paths"][op.path][op.method.lower()].get("security") == [{"HTTPBearer": []}], (
                f"{op} does not document bearer auth"
            )
    # A mutation open to any authenticated caller must be a deliberate decision: today, only these three.
    unscoped_mutations = {key for key, op in operations.items() if mutates(op) and op.scopes == ()}
    assert unscoped_mutations == {
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/switch"),
        ("POST", "/api/v1/orgs"),
    }
    # A viewer reads: every mutation that needs a scope needs one a viewer lacks.
    for op in operations.values():
        if mutates(op) and op.scopes:
            assert not set(op.scopes) <= ROLE_SCOPES[Role.VIEWER], f"a viewer could call {op}"


BAD_CREDENTIALS = {
    "none": {},
    "garbage bearer": {"Authorization": "Bearer garbage"},
    "empty bearer": {"Authorization": "Bearer "},
    "basic auth": {"Authorization": "Basic " + base64.b64encode(b"alice:" + TEST_PASSWORD.encode()).decode()},
    "made-up API key": {"Authorization": "Bearer wlk_0123456789ab_" + "A" * 43},
    "JWT signed by someone else": {
        "Authorization": "Bearer "
        + jwt.encode({"sub": "u", "org": "o", "typ": "access", "ver": 0, "iat": 0, "exp": 4102444800}, "x" * 40)
    },
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
                    response = await client.request(
                        op.method, request_kwargs(op, app.state.test_spec, ids)["url"], json={"unexpected": 1}
                    )
                    assert response.status_code == 401, (
                        f"{label}: {op} with an invalid body answered {response.status_code}"
                    )
    async with anonymous_client(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (
            await client.post("/api/v1/auth/login", json={"username": "nobody", "password": "wrong-password"})
        ).status_code == 401
        assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": "garbage"})).status_code == 401


async def test_another_tenant_gets_404_for_every_id_and_sees_nothing_in_lists(world):
    # lists first (B's own audit log is empty of A's ids until B itself names them in failed requests)
    listings = [
        op
        for op in world.operations
        if op.method == "GET" and not op.public and set(op.path_params) <= set(world.b_ids)
    ]
    assert {op.path for op in listings} >= {
        "/api/v1/datasets",
        "/api/v1/tasks",
        "/api/v1/api-keys",
        "/api/v1/audit",
        "/api/v1/orgs/{org_id}/members",
    }
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
        names_a_resource = bool(op.path_params) or any(
            v in json.dumps(kwargs.get("json", {})) + json.dumps(kwargs.get("data", {}))
            for k, v in world.ids.items()
            if k not in ("version", "alias", "iteration")
        )
        if names_a_resource:
            by_id.append(op)
            response = await call(world.other, op, world.spec, world.ids)
            assert response.status_code == 404, f"{op} with org A's ids: {response.status_code} {response.text}"
            assert "not found" in response.json()["detail"]
            if "org_id" in op.path_params and len(op.path_params) > 1:  # B's own organization, A's resource inside it
                response = await call(world.other, op, world.spec, {**world.ids, "org_id": world.b_ids["org_id"]})
                assert response.status_code == 404, (
                    f"{op} in org B with org A's ids: {response.status_code} {response.text}"
                )
    assert {str(op) for op in by_id} >= {
        "DELETE /api/v1/api-keys/{key_id}",
        "POST /api/v1/tasks/standard",
        "POST /api/v1/tasks/{task_id}/cancel",
        "DELETE /api/v1/orgs/{org_id}/members/{user_id}",
        "PATCH /api/v1/orgs/{org_id}",
    }
    await assert_org_a_untouched(world)


def check_walk(op: Operation, response: httpx.Response, forbidden: bool, who: str) -> None:
    if forbidden:
        assert response.status_code == 403, (
            f"{who}: {op} needs {op.scopes}, answered {response.status_code} {response.text}"
        )
        assert "requires" in response.json()["detail"] or "API keys cannot" in response.json()["detail"], response.text
    else:
        assert response.status_code not in (401, 403) and response.status_code < 500, (
            f"{who}: {op} answered {response.status_code} {response.text}"
        )


async def test_a_viewer_is_forbidden_exactly_what_its_role_lacks(world):
    viewer_scopes = ROLE_SCOPES[Role.VIEWER]
    protected = [op for op in world.operations if not op.public]
    # forbidden ones first, then reads, then the mutations any caller may do (each with a token issued
    # just before it, since one of them may be logout)
    ordered = sorted(protected, key=lambda op: (set(op.scopes) <= viewer_scopes, mutates(op)))
    allowed_mutations = []
    for op in ordered:
        forbidden = not set(op.scopes) <= viewer_scopes
        if mutates(op) and not forbidden:
            allowed_mutations.append(str(op))
            async with world.client_as(world.viewer_id, world.ids["org_id"]) as client:
                response = await call(client, op, world.spec, world.ids)
        else:
            response = await call(world.viewer, op, world.spec, world.ids)
        check_walk(op, response, forbidden, "viewer")
    assert sorted(allowed_mutations) == ["POST /api/v1/auth/logout", "POST /api/v1/auth/switch", "POST /api/v1/orgs"]
    await assert_org_a_untouched(world)


async def test_a_read_only_api_key_is_forbidden_everything_but_dataset_reads(world):
    granted = {Scope.DATASETS_READ}
    allowed = []
    for op in [op for op in world.operations if not op.public]:
        if mutates(op) and not op.scopes:
            forbidden = True  # creating organizations and logging out are for people, not programs
        else:
            forbidden = not set(op.scopes) <= granted
        response = await call(world.reader, op, world.spec, world.ids)
        check_walk(op, response, forbidden, "datasets:read key")
        if not forbidden:
            allowed.append(str(op))
            assert response.status_code == 200, f"{op}: {response.status_code} {response.text}"
    assert set(allowed) >= {
        "GET /api/v1/datasets",
        "GET /api/v1/datasets/{dataset_id}",
        "GET /api/v1/datasets/{dataset_id}/preview",
    }
    assert (await world.reader.get("/api/v1/auth/me")).json()["scopes"] == ["datasets:read"]
    await assert_org_a_untouched(world)
    assert (await world.owner.get("/api/v1/auth/me")).status_code == 200, "the key logged its creator out"


async def test_every_limit_query_param_is_bounded(world):
    checked = []
    for op in world.operations:
        if op.method != "GET" or "limit" not in op.query:
            continue
        schema = op.query["limit"]
        assert schema.get("maximum", float("inf")) <= 200 and schema.get("minimum", 0) >= 1, (
            f"{op}: unbounded limit {schema}"
        )
        url = request_kwargs(op, world.spec, world.ids)["url"]
        for params in (
            {"limit": schema["maximum"] + 1},
            {"limit": 201},
            {"limit": 10_000},
            {"limit": 0},
            {"limit": -1},
        ):
            response = await world.owner.get(url, params=params)
            assert names_field(response, "limit"), f"{op} {params}: {response.status_code} {response.text}"
        if "offset" in op.query:
            assert names_field(await world.owner.get(url, params={"offset": -1}), "offset")
        assert (await world.owner.get(url, params={"limit": schema["maximum"]})).status_code == 200
        checked.append(op.path)
    assert set(checked) >= {"/api/v1/datasets", "/api/v1/tasks", "/api/v1/audit"}
