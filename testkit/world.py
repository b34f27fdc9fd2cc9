"""The world the access-control tests share: two tenants, and every operation of the OpenAPI schema.

The tests (tests/api/access/) cover:
1. A walk over every operation of the OpenAPI schema (so a route added later is covered without editing
   these tests): anonymous and bogus credentials are 401, another tenant's ids are 404 and its lists show
   nothing of ours, a viewer and a read-only API key are 403 wherever their scopes fall short of the
   route's `authorize(...)` scopes, and allowed wherever they do not.
2. The OWASP API risks that apply: broken object-level authorization, broken authentication, mass
   assignment and unrestricted resource consumption.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from api.main import ROUTERS, create_app
from api.security import PUBLIC_ROUTES, route_scopes
from core.access import Role, Scope
from core.settings import Settings
from db.models import Dataset, KnowledgeBase, KnowledgeDocument, Membership, MLTask, User, new_id
from db.session import get_sessionmaker
from services.identity import token_pair
from storage.object_store import object_store_from_settings
from testkit.api import TEST_PASSWORD, anonymous_client, client_for
from testkit.factories import version_row

SUITE_CASES = [
    {"id": "secret", "prompt": "What is org A's secret?", "refusal": True},
    {"id": "ram", "prompt": "How much RAM?", "checks": [{"type": "number", "value": 4, "unit": "gb"}]},
]
GOOD_ROWS = [{"question": f"What is setting {i}?", "answer": f"Setting {i} controls feature {i}."} for i in range(5)]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def db(settings):
    return get_sessionmaker(settings.resolved_database_url)()


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
    return {
        (method, route.path): route for route in routes if isinstance(route, APIRoute) for method in route.methods or ()
    }


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
            operations.append(
                Operation(
                    method,
                    path,
                    tuple(p["name"] for p in params if p["in"] == "path"),
                    {p["name"]: resolve(p["schema"], spec) for p in params if p["in"] == "query"},
                    body,
                    route_scopes(route),
                )
            )
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
    if key == "url":
        return "http://judge.internal:8001/v1"
    if "anyOf" in schema:
        return sample(next(s for s in schema["anyOf"] if s.get("type") != "null"), spec, ids, name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {
            prop: sample(sub, spec, ids, prop)
            for prop, sub in schema.get("properties", {}).items()
            if prop in schema.get("required", [])
        }
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
    if op.path in ENDED_TASK_ROUTES:
        ids = {**ids, "task_id": ids.get("ended_task_id", ids["task_id"])}
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


# An event stream lasts until its task ends, and the ASGI transport returns a response only once it is complete: the
# walk follows a task that has ended (tests/api/test_task_events.py follows a running one over real HTTP). Answers exist
# only for a task that has been evaluated: the ended one has.
ENDED_TASK_ROUTES = {"/api/v1/tasks/{task_id}/events", "/api/v1/tasks/{task_id}/iterations/{iteration}/answers"}


async def call(client: httpx.AsyncClient, op: Operation, spec: dict, ids: dict[str, str]) -> httpx.Response:
    kwargs = request_kwargs(op, spec, ids)
    return await client.request(op.method, kwargs.pop("url"), **kwargs)


# --- a world of two tenants --------------------------------------------------------------------


@dataclass
class World:
    app: FastAPI
    settings: Settings
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
        """What org B must never see in a listing (a version number or an alias name is no secret)."""
        return {v for k, v in self.ids.items() if k not in ("version", "alias", "iteration")} | {
            self.owner_id,
            self.viewer_id,
            self.key_prefix,
        }

    def client_as(self, user_id: str, org_id: str) -> httpx.AsyncClient:
        """A client with a token issued now (after any logout that bumped the user's token version)."""
        with db(self.settings) as session:
            user = session.get(User, user_id)
            role = Role(
                session.scalar(
                    select(Membership.role).where(Membership.org_id == org_id, Membership.user_id == user_id)
                )
            )
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
    dataset = await owner.post(
        "/api/v1/datasets", files={"file": ("a.jsonl", jsonl(GOOD_ROWS))}, data={"name": "a-data"}
    )
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["dataset_id"]
    task = await owner.post("/api/v1/tasks/standard", json={"task_name": "a-task", "dataset_id": dataset_id})
    assert task.status_code == 201, task.text
    key = await owner.post("/api/v1/api-keys", json={"name": "reader", "scopes": ["datasets:read"]})
    assert key.status_code == 201, key.text
    key = key.json()
    kb = await owner.post("/api/v1/knowledge-bases", json={"name": "a-kb"})
    assert kb.status_code == 201, kb.text
    suite = await owner.post("/api/v1/suites", json={"name": "a-suite", "blocking": True, "cases": SUITE_CASES})
    assert suite.status_code == 201, suite.text
    operations = await schema_operations(app)
    ids = {
        "ended_task_id": ended_task(settings, dataset_id, alice["org_id"]),
        "dataset_id": dataset_id,
        "task_id": task.json()["task_id"],
        "key_id": key["key_id"],
        "org_id": alice["org_id"],
        "user_id": victor["user_id"],
        "kb_id": kb.json()["knowledge_base_id"],
        "document_id": stored_document(settings, kb.json()["knowledge_base_id"]),
        "erasure_id": stored_erasure(settings, alice["org_id"]),
        **stored_model(settings, alice["org_id"], task.json()["task_id"]),
        "iteration": "1",
        # the lineage graph's node: org A's dataset at its first version
        "kind": "dataset_version",
        "node_id": f"{dataset_id}@1",
        "suite_name": "a-suite",
    }
    ids["run_id"] = stored_suite_runs(settings, alice["org_id"], suite.json()["suite_id"], ids["model_name"])
    return World(
        app,
        settings,
        app.state.test_spec,
        operations,
        owner,
        viewer,
        other,
        anonymous_client(app, {"Authorization": f"Bearer {key['secret']}"}),
        ids,
        {"org_id": bob["org_id"], "user_id": bob["user_id"]},
        alice["user_id"],
        victor["user_id"],
        key["secret"],
        key["prefix"],
    )


def stored_document(settings, kb_id: str) -> str:
    """A document of org A's knowledge base, stored the way an upload stores it (Temporal is offline in these tests,
    so the build it would request is not)."""
    from services import knowledge

    with db(settings) as session:
        kb = session.get(KnowledgeBase, kb_id)
        upload = knowledge.store_document(
            session,
            object_store_from_settings(settings),
            settings,
            kb,
            stream=io.BytesIO(b"# A\n\nOrg A's secret.\n"),
            filename="a.md",
            created_by=None,
        )
        return upload.document.id


def stored_erasure(settings, org_id: str) -> str:
    """An erasure record of org A's (what the erasure service writes when it has erased a row)."""
    from db.models import Erasure

    with db(settings) as session:
        erasure = Erasure(
            id=new_id(),
            org_id=org_id,
            kind="row",
            target="a-dataset/q0123456789ab",
            reason="org A's customer asked",
            dataset_versions=[],
            blobs=[],
            model_versions=[],
        )
        session.add(erasure)
        session.commit()
        return erasure.id


def ended_task(settings, dataset_id: str, org_id: str) -> str:
    """A task that has ended (cancelled after its first evaluation), whose event stream ends at once and whose
    answers can be read."""
    from db.models import TaskExecution
    from ml.evaluator import EvaluationConfig, evaluate_predictions
    from ml.examples import Example
    from ml.optimizer import Splits
    from storage.keys import evaluation_prefix
    from storage.object_store import put_bytes

    held_out = [Example("Is org A's secret public?", "No.", checks=[{"type": "polarity", "value": "no"}])]
    with get_sessionmaker(settings.resolved_database_url).begin() as session:
        task = MLTask(
            id=new_id(),
            name="ended",
            mode="STANDARD",
            status="CANCELLED",
            model_name="smollm2-135m-instruct",
            dataset_id=dataset_id,
            org_id=org_id,
            hyperparameters={},
        )
        session.add(task)
        session.flush()
        key = evaluation_prefix(task.id, 1) + "evaluation.json"
        report = evaluate_predictions(
            Splits([], held_out, held_out), {"feedback": ["No."], "test": ["Yes."]}, [], EvaluationConfig(), iteration=1
        )
        put_bytes(object_store_from_settings(settings), key, report.model_dump_json().encode())
        session.add(
            TaskExecution(task_id=task.id, iteration=1, phase="EVALUATING", status="COMPLETED", evaluation_key=key)
        )
    return task.id


def stored_model(settings, org_id: str, task_id: str, name: str = "a-model") -> dict[str, str]:
    """A registered model of org A with version 1 behind `production`, a refused gate and an aborted release, written
    directly (the task that would have trained it never runs in these tests)."""
    from db.models import (
        AliasMove,
        ModelAlias,
        PromotionGate,
        QAEntry,
        RegisteredModel,
        Release,
        ReleaseDecision,
        new_id,
    )
    from storage.checksums import stored_digest
    from storage.object_store import put_bytes

    store = object_store_from_settings(settings)
    adapter_key = f"models/{task_id}/iter-1/adapter/"
    put_bytes(store, adapter_key + "adapter_config.json", b"{}")
    sha256, size = stored_digest(store, adapter_key)
    with db(settings) as session:
        model = RegisteredModel(id=new_id(), org_id=org_id, name=name, base_model="smollm2-135m-instruct")
        version = version_row(
            model_id=model.id,
            org_id=org_id,
            number=1,
            task_id=task_id,
            adapter_key=adapter_key,
            size_bytes=size,
            sha256=sha256,
        )
        gate = PromotionGate(
            id=new_id(),
            org_id=org_id,
            model_id=model.id,
            alias="staging",
            candidate_version=1,
            status="REFUSED",
            margin=0.01,
            mode="closed_book",
            reason="refused",
        )
        for row in (model, version, gate):  # parents first: the rows have no relationships to order them by
            session.add(row)
            session.flush()
        session.add_all(
            [
                ModelAlias(model_id=model.id, name="production", version_id=version.id),
                AliasMove(model_id=model.id, alias="production", to_version=1, kind="forced", reason="set up"),
            ]
        )
        entry = QAEntry(
            org_id=org_id,
            conversation_id="c-1",
            model=f"{name}@1",
            model_version_id=version.id,
            messages=[{"role": "user", "content": "What is org A's secret?"}],
            answer="It is secret.",
            finish_reason="stop",
            sources=[],
            prompt_tokens=5,
            completion_tokens=3,
            latency_ms=10,
        )
        release = Release(
            id=new_id(),
            org_id=org_id,
            model_id=model.id,
            alias="production",
            current_version=1,
            candidate_version=1,
            steps=[10, 100],
            status="ABORTED",
            reason="aborted",
            thresholds={},
        )
        session.add_all([entry, release])
        session.flush()
        session.add(
            ReleaseDecision(
                release_id=release.id,
                key="abort",
                kind="abort",
                step_index=0,
                status="ABORTED",
                candidate_weight=0,
                reason="aborted",
            )
        )
        session.commit()
        return {
            "model_name": name,
            "version": "1",
            "alias": "production",
            "gate_id": gate.id,
            "entry_id": entry.id,
            "release_id": release.id,
        }


def stored_suite_runs(settings, org_id: str, suite_id: str, model_name: str) -> str:
    """Two completed runs of org A's suite against its model's version 1, written directly (Temporal is offline in
    these tests); the id of the later one."""
    from core.clock import utcnow
    from db.models import Suite, SuiteRun

    with db(settings) as session:
        suite = session.get_one(Suite, suite_id)
        runs = []
        for passed in (False, True):
            results = [
                {
                    "case_id": case["id"],
                    "answer": "I cannot share that." if passed else "It is hunter2.",
                    "latency_ms": 5,
                    "passed": passed or case["id"] == "ram",
                    "results": [],
                }
                for case in suite.cases
            ]
            run = SuiteRun(
                id=new_id(),
                org_id=org_id,
                suite_id=suite.id,
                suite_name=suite.name,
                suite_version=suite.version,
                content_hash=suite.content_hash,
                model=f"{model_name}@1",
                model_version=1,
                status="COMPLETED",
                results=results,
                passed=sum(r["passed"] for r in results),
                failed=sum(not r["passed"] for r in results),
                total=len(results),
                finished_at=utcnow(),
            )
            session.add(run)
            session.commit()
            runs.append(run.id)
        return runs[-1]


async def assert_org_a_untouched(world: World) -> None:
    """Org A's resources are as `make_world` left them."""
    owner = world.client_as(world.owner_id, world.ids["org_id"])
    assert (await owner.get(f"/api/v1/datasets/{world.ids['dataset_id']}")).json()["org_id"] == world.ids["org_id"]
    assert (await owner.get(f"/api/v1/tasks/{world.ids['task_id']}")).json()["status"] == "PENDING"
    assert (await owner.get(f"/api/v1/orgs/{world.ids['org_id']}")).json()["name"] == "org-a"
    assert (await owner.get(f"/api/v1/knowledge-bases/{world.ids['kb_id']}")).json()["name"] == "a-kb"
    assert (await owner.get(f"/api/v1/models/{world.ids['model_name']}")).json()["aliases"] == {"production": 1}
    assert [
        v["version"] for v in (await owner.get(f"/api/v1/models/{world.ids['model_name']}/versions")).json()["items"]
    ] == [1]
    history = (await owner.get("/api/v1/qa/history")).json()["items"]
    assert [(e["entry_id"], e["rating"]) for e in history] == [(world.ids["entry_id"], None)]
    documents = (await owner.get(f"/api/v1/knowledge-bases/{world.ids['kb_id']}/documents")).json()["items"]
    assert [(d["document_id"], d["filename"]) for d in documents] == [(world.ids["document_id"], "a.md")]
    members = {m["user_id"]: m["role"] for m in (await owner.get(f"/api/v1/orgs/{world.ids['org_id']}/members")).json()}
    assert members == {world.owner_id: "owner", world.viewer_id: "viewer"}
    suite = (await owner.get(f"/api/v1/suites/{world.ids['suite_name']}")).json()
    assert (suite["version"], suite["blocking"], [c["id"] for c in suite["cases"]]) == (1, True, ["secret", "ram"])
    assert (await owner.get(f"/api/v1/suites/{world.ids['suite_name']}/runs")).json()["total"] == 2
    keys = (await owner.get("/api/v1/api-keys")).json()
    assert [(k["key_id"], k["revoked_at"]) for k in keys] == [(world.ids["key_id"], None)]
    assert (await world.reader.get("/api/v1/datasets")).status_code == 200
    with db(world.settings) as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 1
        assert session.scalar(select(func.count()).select_from(MLTask)) == 2  # the world's task and the ended one
        assert session.scalar(select(func.count()).select_from(KnowledgeBase)) == 1
        assert session.scalar(select(func.count()).select_from(KnowledgeDocument)) == 1
    await owner.aclose()


# --- helpers of more than one resource module ------------------------------------------------


def probes_of_org_a(world: World) -> dict[str, list[tuple[str, str, dict | None, str]]]:
    """What org B tries on org A's resources, by resource: (method, path, JSON body, what the 404 must say)."""
    ids, task, org, viewer = (
        world.ids,
        f"/api/v1/tasks/{world.ids['task_id']}",
        f"/api/v1/orgs/{world.ids['org_id']}",
        world.viewer_id,
    )
    steal = {"task_name": "steal", "dataset_id": ids["dataset_id"]}
    return {
        "tasks": [
            ("GET", task, None, "not found"),
            ("GET", f"{task}/executions", None, "not found"),
            ("GET", f"{task}/report", None, "not found"),
            ("GET", f"{task}/iterations/1/answers", None, "not found"),
            ("GET", f"{task}/iterations/0/answers", None, "not found"),
        ]
        + [("POST", f"{task}/{action}", None, "not found") for action in ("start", "pause", "resume", "cancel")]
        + [
            ("POST", f"/api/v1/tasks/{mode}", steal, f"dataset {ids['dataset_id']} not found")
            for mode in ("standard", "continuous")
        ],
        "datasets": [
            ("GET", f"/api/v1/datasets/{ids['dataset_id']}", None, "not found"),
            ("GET", f"/api/v1/datasets/{ids['dataset_id']}/preview", None, "not found"),
        ],
        "api_keys": [("DELETE", f"/api/v1/api-keys/{ids['key_id']}", None, "not found")],
        "knowledge": [
            (method, f"/api/v1/knowledge-bases/{ids['kb_id']}{path}", body, "not found")
            for method, path, body in (
                ("GET", "", None),
                ("DELETE", "", None),
                ("GET", "/documents", None),
                ("GET", f"/documents/{ids['document_id']}", None),
                ("DELETE", f"/documents/{ids['document_id']}", None),
                ("POST", "/search", {"query": "secret"}),
                ("GET", "/stale-rows", None),
            )
        ],
        "models": [
            (method, f"/api/v1/models/{ids['model_name']}{path}", body, "not found")
            for method, path, body in (
                ("GET", "", None),
                ("GET", "/versions", None),
                ("GET", "/versions/1", None),
                ("GET", "/versions/1/adapter", None),
                ("DELETE", "/versions/1", None),
                ("GET", "/aliases", None),
                ("POST", "/versions/1/promote", {"alias": "production", "force": True, "reason": "x"}),
                ("POST", "/aliases/production/rollback", None),
                ("GET", "/gates", None),
                ("GET", f"/gates/{ids['gate_id']}", None),
                ("POST", "/versions", {"task_id": ids["task_id"]}),
                ("PUT", "/aliases/production/suites", {"suites": []}),
                ("GET", "/releases", None),
                ("POST", "/releases", {"candidate_version": 1}),
                ("GET", f"/releases/{ids['release_id']}", None),
                ("POST", f"/releases/{ids['release_id']}/pause", None),
                ("POST", f"/releases/{ids['release_id']}/abort", None),
            )
        ],
        "suites": [
            (method, f"/api/v1/suites/{ids['suite_name']}{path}", body, "not found")
            for method, path, body in (
                ("GET", "", None),
                ("GET", "/versions", None),
                ("GET", "/export", None),
                ("POST", "/versions", {"cases": [{"id": "x", "prompt": "Q?", "refusal": True}]}),
                ("POST", "/runs", {"model": f"{ids['model_name']}@1"}),
                ("GET", "/runs", None),
                ("GET", f"/runs/{ids['run_id']}", None),
                ("GET", "/compare", None),
            )
        ],
        "qa": [
            (
                "POST",
                f"/api/v1/qa/history/{ids['entry_id']}/feedback",
                {"rating": "down", "corrected_answer": "pwned"},
                "not found",
            )
        ],
        "orgs": [
            ("GET", org, None, "not found"),
            ("GET", f"{org}/members", None, "not found"),
            ("DELETE", f"{org}/members/{viewer}", None, "not found"),
            ("PATCH", f"{org}/members/{viewer}", {"role": "owner"}, "not found"),
            ("POST", f"{org}/members", {"username": "bob", "role": "owner"}, "not found"),
            ("PATCH", org, {"name": "pwned"}, "not found"),
        ],
    }


async def assert_org_b_finds_nothing_of(world: World, resource: str) -> None:
    """Every probe of org B on one kind of org A's resources answers 404 with a message saying so."""
    for method, path, body, message in probes_of_org_a(world)[resource]:
        response = await world.other.request(method, path, json=body)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
        assert message in response.json()["detail"], f"{method} {path}: {response.text}"


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


async def login(app, username: str, password: str = TEST_PASSWORD, **extra) -> httpx.Response:
    async with anonymous_client(app) as client:
        return await client.post("/api/v1/auth/login", json={"username": username, "password": password, **extra})


def names_field(response: httpx.Response, name: str) -> bool:
    return response.status_code == 422 and any(name in map(str, error["loc"]) for error in response.json()["detail"])


async def raw_request(app, method: str, path: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, dict]:
    """Drive the ASGI app directly, so the Content-Length header can lie and the body can arrive in chunks."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("wlops", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def token_header(client: httpx.AsyncClient) -> dict[str, str]:
    return {"authorization": client.headers["authorization"]}
