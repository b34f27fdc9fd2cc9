"""Property-based fuzzing of the authenticated OpenAPI schema with schemathesis.

Every documented operation gets generated requests (schema-valid and invalid, from the examples,
coverage and fuzzing phases) sent with an owner's access token; about half of them aim at real
resources instead of random ids. Each response must not be a server error and must match the
schema: a documented status code, the documented content type and headers, and a body that
validates against the documented model. Temporal is unreachable on purpose: routes that need it
must answer their documented 503, never a 500.

What the fuzzing found is pinned below as plain regression tests (they hold on SQLite and PostgreSQL).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.main import create_app
from api.security import PUBLIC_ROUTES
from cli.users import create_user
from core.access import Role
from core.settings import Settings
from db.session import migrate
from services.identity import token_pair
from testkit.api import TEST_PASSWORD
from testkit.documents import write_dataset
from testkit.fuzzing import CHECKS, FUZZ_SETTINGS_KW
from testkit.world import SUITE_CASES, ended_task, stored_document, stored_model, stored_suite_runs

MAX_EXAMPLES = 25  # per operation and phase: about 20 s for the whole schema on 2 cores
# Loaded when the module is imported: schemathesis' lazy `schemathesis.pytest.from_fixture` loader fails under
# pytest 9 (it reads the removed `Node._nodeid`), so the app gets its own temporary data dir, removed at exit.
_DATA_DIR = Path(tempfile.mkdtemp(prefix="wlops-fuzz-"))
atexit.register(shutil.rmtree, _DATA_DIR, ignore_errors=True)
FUZZ_SETTINGS = Settings(
    data_dir=_DATA_DIR / "wlops", model_cache=_DATA_DIR / "model-cache", temporal_address="127.0.0.1:1"
)
migrate(FUZZ_SETTINGS.resolved_database_url)
openapi = schemathesis.openapi.from_asgi("/openapi.json", create_app(FUZZ_SETTINGS))
openapi.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
# logout would revoke the token every other case sends (it is covered by tests/api/test_identity.py)
schema = openapi.exclude(method="POST", path="/api/v1/auth/logout")


@dataclass(frozen=True)
class World:
    """An owner's credentials and one real resource of each kind, so fuzzed requests also get past the 404s."""

    headers: dict[str, str]
    ids: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    setup = create_user(FUZZ_SETTINGS, "fuzzer", TEST_PASSWORD, "fuzz-org", Role.OWNER)
    tokens = token_pair(FUZZ_SETTINGS, setup.user, setup.org.id, Role.OWNER)
    headers = {"Authorization": f"Bearer {tokens.access_token}"}
    dataset = write_dataset(tmp_path_factory.mktemp("fuzz-data") / "faq.jsonl")
    with TestClient(schema.app, headers=headers) as api:
        dataset_id = _created(
            api.post("/api/v1/datasets", files={"file": (dataset.name, dataset.read_bytes())}, data={"name": "faq"})
        )["dataset_id"]
        task_id = _created(api.post("/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": dataset_id}))[
            "task_id"
        ]
        viewer_id = _created(
            api.post(
                f"/api/v1/orgs/{setup.org.id}/members",
                json={"username": "fuzz-viewer", "password": TEST_PASSWORD, "role": "viewer"},
            )
        )["user_id"]
        key_id = _created(api.post("/api/v1/api-keys", json={"name": "k", "scopes": ["datasets:read"]}))["key_id"]
        kb_id = _created(api.post("/api/v1/knowledge-bases", json={"name": "kb"}))["knowledge_base_id"]
        suite_id = _created(api.post("/api/v1/suites", json={"name": "suite", "cases": SUITE_CASES}))["suite_id"]
    model = stored_model(FUZZ_SETTINGS, setup.org.id, task_id)
    return World(
        headers,
        {
            "ended_task_id": ended_task(FUZZ_SETTINGS, dataset_id, setup.org.id),
            "org_id": setup.org.id,
            "dataset_id": dataset_id,
            "task_id": task_id,
            "user_id": viewer_id,
            "key_id": key_id,
            "kb_id": kb_id,
            "document_id": stored_document(FUZZ_SETTINGS, kb_id),
            **model,
            "suite_name": "suite",
            "run_id": stored_suite_runs(FUZZ_SETTINGS, setup.org.id, suite_id, model["model_name"]),
        },
    )


def _created(response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def aim_at_real_resources(case, ids: dict[str, str]) -> None:
    """Put the real ids into the path, and the real dataset into a task body (an event stream follows a task that has
    ended: a running one's lasts until it ends)."""
    for name in case.path_parameters or {}:
        if name in ids:
            case.path_parameters[name] = ids[
                "ended_task_id" if case.path.endswith("/events") and name == "task_id" else name
            ]
    if isinstance(case.body, dict):
        for name, id_name in (
            ("dataset_id", "dataset_id"),
            ("datasetId", "dataset_id"),
            ("task_id", "task_id"),
            ("taskId", "task_id"),
        ):
            if name in case.body:
                case.body[name] = ids[id_name]


@schema.parametrize()
@schema.given(real_ids=st.booleans())
@hypothesis_settings(max_examples=MAX_EXAMPLES, **FUZZ_SETTINGS_KW)
def test_every_operation_answers_as_documented(case, real_ids, world):
    if real_ids:
        aim_at_real_resources(case, world.ids)
    case.call_and_validate(headers=world.headers, checks=CHECKS)


@schema.parametrize()
@hypothesis_settings(max_examples=5, **FUZZ_SETTINGS_KW)
def test_without_valid_credentials_only_public_routes_succeed(case, world):
    """No token (or whatever bearer value schemathesis makes up): documented errors, and no 2xx outside the public
    routes."""
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code >= 400 or (case.method.upper(), case.path) in PUBLIC_ROUTES, response.text


# --- what the fuzzing found, pinned -----------------------------------------------------------


@pytest.fixture(scope="module")
def api(world):
    with TestClient(schema.app, headers=world.headers, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("path", ["/api/v1/datasets", "/api/v1/tasks", "/api/v1/audit"])
def test_a_huge_offset_is_422_not_500(api, path):
    response = api.get(path, params={"offset": 2**63})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "offset"]
    assert api.get(path, params={"offset": 2**31 - 1}).status_code == 200


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("post", "/api/v1/auth/login", {"username": "fuzz\x00er", "password": TEST_PASSWORD}),
        ("post", "/api/v1/auth/refresh", {"refresh_token": "x\x00"}),
        ("post", "/api/v1/orgs", {"name": "a\x00"}),
        ("post", "/api/v1/api-keys", {"name": "k\x00", "scopes": ["datasets:read"]}),
        ("post", "/api/v1/tasks/standard", {"task_name": "t\x00", "dataset_id": "d"}),
    ],
)
def test_nul_characters_in_bodies_are_422(api, method, path, body):
    """PostgreSQL cannot store NUL: these were 500s there (SQLite quietly stored them)."""
    response = api.request(method.upper(), path, json=body)
    assert response.status_code == 422 and "NUL" in response.text, response.text


def test_nul_characters_in_paths_queries_and_form_fields_are_422(api, world):
    for path in (
        "/api/v1/datasets/a%00b",
        "/api/v1/tasks/a%00b/executions",
        "/api/v1/audit?action=a%00b",
        f"/api/v1/orgs/{world.ids['org_id']}%00",
    ):
        response = api.get(path)
        assert response.status_code == 422 and "NUL" in response.json()["detail"], (path, response.text)
    assert api.delete("/api/v1/api-keys/a%00b").status_code == 422
    upload = api.post(
        "/api/v1/datasets", files={"file": ("a.jsonl", b'{"question": "q", "answer": "a"}\n')}, data={"name": "n\x00"}
    )
    assert upload.status_code == 422 and upload.json()["detail"][0]["loc"] == ["body", "name"]


def test_timestamps_carry_their_utc_offset(api, world):
    """SQLite hands timestamps back without a zone; responses said `2026-01-01T12:00:00` (not an RFC 3339 date-time)."""
    stamps = [
        api.get(f"/api/v1/datasets/{world.ids['dataset_id']}").json()["created_at"],
        api.get(f"/api/v1/tasks/{world.ids['task_id']}").json()["updated_at"],
        api.get("/api/v1/api-keys").json()[0]["created_at"],
        api.get(f"/api/v1/orgs/{world.ids['org_id']}/members").json()[0]["created_at"],
    ]
    audit = api.get("/api/v1/audit").json()["items"]
    assert audit, "the seeding requests are audited"
    stamps.append(audit[0]["at"])
    assert all(s.endswith(("Z", "+00:00")) for s in stamps), stamps


def test_errors_have_one_documented_shape(api):
    """Every error is `{"detail": ...}`: a message (ours), or a list of field errors (request validation), both under
    the documented 422; a body that cannot be parsed is a documented 400, not an undocumented one."""
    spec = api.get("/openapi.json").json()
    responses = spec["paths"]["/api/v1/tasks/standard"]["post"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrorResponse"
    }
    assert "400" in responses and "HTTPValidationError" not in spec["components"]["schemas"]
    message = api.post("/api/v1/tasks/standard", json={"task_name": "t", "dataset_id": "nope", "model_name": "gpt-17"})
    fields = api.post("/api/v1/tasks/standard", json={"task_name": ""})
    unparsable = api.post("/api/v1/tasks/standard", content=b"h\xff\xff", headers={"content-type": "application/json"})
    assert isinstance(fields.json()["detail"], list) and fields.status_code == 422
    assert message.status_code == 404 and isinstance(message.json()["detail"], str)
    assert unparsable.status_code == 400 and isinstance(unparsable.json()["detail"], str)
