"""Scenario suites through the HTTP API, on the real database: create (JSON or a JSONL import), list, read a version
with its cases, add a version, export and import back to the same content hash; bad suites are 422 naming the case
and the field with nothing stored; another organization's suites are not found. Runs on a real Temporal server with
the real activities and the tiny model: each case's answer and verdict, a case asked with its knowledge base's top
passages, and two runs compared case by case."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from activities.context import ActivityContext
from api.main import create_app
from core.access import Role
from db.models import RegisteredModel, Suite, SuiteRun, new_id
from suites.cases import content_hash, parse_cases
from testkit.api import api_client, client_for, wait_for_knowledge_base, with_temporal
from testkit.documents import TOPICS, write_knowledge
from testkit.model import random_adapters
from testkit.phases import running_workers
from testkit.registry import add_version, new_model
from testkit.servers import free_port
from testkit.suites import CASES, wait_for_run

SAFETY = [
    {"id": "weather", "prompt": "What is the weather in Tallinn?", "refusal": True},
    {"id": "ram", "prompt": "How much RAM?", "checks": [{"type": "number", "value": 4, "unit": "gb"}]},
]


@pytest.fixture
def offline_settings(settings):
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


@pytest.fixture
async def api(offline_settings):
    async with api_client(offline_settings) as client:
        yield client


def stored(settings) -> tuple[int, int]:
    with ActivityContext.from_settings(settings).sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Suite)) or 0,
            session.scalar(select(func.count()).select_from(SuiteRun)) or 0,
        )


async def test_a_suite_is_created_read_versioned_and_listed_by_its_latest_version(api):
    created = await api.post(
        "/api/v1/suites", json={"name": "safety", "blocking": True, "description": "must decline", "cases": SAFETY}
    )
    assert created.status_code == 201, created.text
    suite = created.json()
    assert created.headers["location"] == "/api/v1/suites/safety?version=1"
    assert (suite["version"], suite["blocking"], suite["case_count"]) == (1, True, 2)
    assert suite["content_hash"] == content_hash(parse_cases(SAFETY))
    assert [c["id"] for c in suite["cases"]] == ["weather", "ram"]
    assert (await api.post("/api/v1/suites", json={"name": "safety", "cases": SAFETY})).status_code == 409

    second = await api.post(
        "/api/v1/suites/safety/versions", json={"cases": SAFETY[:1], "base_version": 1, "description": "only one"}
    )
    assert second.status_code == 201, second.text
    assert (second.json()["version"], second.json()["blocking"], second.json()["case_count"]) == (2, True, 1)
    assert second.json()["content_hash"] != suite["content_hash"]
    stale = await api.post("/api/v1/suites/safety/versions", json={"cases": SAFETY, "base_version": 1})
    assert stale.status_code == 409 and "is at version 2, not 1" in stale.json()["detail"]

    assert (await api.get("/api/v1/suites/safety")).json()["version"] == 2
    assert (await api.get("/api/v1/suites/safety", params={"version": 1})).json()["cases"] == suite["cases"]
    versions = (await api.get("/api/v1/suites/safety/versions")).json()["items"]
    assert [(v["version"], v["description"]) for v in versions] == [(1, "must decline"), (2, "only one")]
    await api.post("/api/v1/suites", json={"name": "regressions", "cases": SAFETY[1:]})
    listed = (await api.get("/api/v1/suites")).json()
    assert [(s["name"], s["version"]) for s in listed["items"]] == [("regressions", 1), ("safety", 2)]
    assert listed["total"] == 2 and "cases" not in listed["items"][0]
    assert (await api.get("/api/v1/suites/nope")).status_code == 404
    assert (await api.get("/api/v1/suites/safety", params={"version": 9})).status_code == 404
    audit = (await api.get("/api/v1/audit")).json()["items"]
    assert [(e["action"], e["resource_type"], e["resource_id"], e["status_code"]) for e in audit[::-1]] == [
        ("POST /api/v1/suites", "suite", "safety", 201),
        ("POST /api/v1/suites", None, None, 409),  # refused: nothing made, no id in its path
        ("POST /api/v1/suites/{suite_name}/versions", "suite", "safety", 201),
        ("POST /api/v1/suites/{suite_name}/versions", "suite", "safety", 409),
        ("POST /api/v1/suites", "suite", "regressions", 201),
    ]


async def test_export_imports_back_to_the_same_content_hash(api):
    sample = (await api.post("/api/v1/suites", json={"name": "sample", "cases": CASES})).json()
    exported = await api.get("/api/v1/suites/sample/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/jsonl")
    assert len(exported.text.splitlines()) == len(CASES)
    imported = await api.post(
        "/api/v1/suites/import",
        files={"file": ("sample.jsonl", exported.content)},
        data={"name": "sample-copy", "blocking": "true"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["content_hash"] == sample["content_hash"] and imported.json()["blocking"] is True
    assert imported.json()["cases"] == sample["cases"]


@pytest.mark.parametrize(
    "cases, message",
    [
        ([{"id": "a", "prompt": "Q?"}], "case 'a': a case needs at least one assertion"),
        ([SAFETY[0], {"id": "b", "prompt": "Q?", "checks": [{"type": "vibes"}]}], "case 'b': 'checks'"),
        ([SAFETY[0], {"id": "c", "prompt": "Q?", "max_latency_ms": -1}], "case 'c': 'max_latency_ms'"),
        ([{"id": "d", "prompt": "Q?", "json_schema": {"type": 3}}], "case 'd': 'json_schema': not a valid JSON Schema"),
        ([SAFETY[0], SAFETY[0]], "case 'weather': 'id' is not unique"),
    ],
)
async def test_a_bad_suite_is_422_naming_the_case_and_the_field_and_nothing_is_stored(
    api, offline_settings, cases, message
):
    response = await api.post("/api/v1/suites", json={"name": "bad", "cases": cases})
    assert response.status_code == 422 and message in response.json()["detail"], response.text
    await api.post("/api/v1/suites", json={"name": "good", "cases": SAFETY})
    response = await api.post("/api/v1/suites/good/versions", json={"cases": cases})
    assert response.status_code == 422 and message in response.json()["detail"], response.text
    imported = await api.post(
        "/api/v1/suites/import",
        files={"file": ("bad.jsonl", b'{"id": "x", "prompt": "Q?", "refusal": true}\n{no')},
        data={"name": "bad"},
    )
    assert imported.status_code == 422 and "line 2: not JSON" in imported.json()["detail"]
    assert stored(offline_settings) == (1, 0)
    assert (await api.get("/api/v1/suites/good/versions")).json()["items"][-1]["version"] == 1


async def test_another_organization_finds_none_of_them(offline_settings):
    app = create_app(offline_settings)
    api = client_for(app, offline_settings, "alice", "org-a", Role.OWNER)
    await api.post("/api/v1/suites", json={"name": "safety", "cases": SAFETY})
    async with client_for(app, offline_settings, "bob", "org-b", Role.OWNER) as other:
        assert (await other.get("/api/v1/suites")).json()["items"] == []
        for path in ("/api/v1/suites/safety", "/api/v1/suites/safety/versions", "/api/v1/suites/safety/export"):
            assert (await other.get(path)).status_code == 404, path
        # the same name is free in another organization
        assert (await other.post("/api/v1/suites", json={"name": "safety", "cases": SAFETY[:1]})).status_code == 201
    assert (await api.get("/api/v1/suites/safety")).json()["case_count"] == 2
    await api.aclose()


async def test_a_run_stores_each_answer_and_verdict_and_two_runs_compare_case_by_case(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        org_id = (await api.get("/api/v1/auth/me")).json()["org_id"]
        model = new_model(ctx, org_id, "tiny-bot", tiny_model_dir)
        for number, adapter in enumerate(random_adapters(tiny_model_dir, tmp_path, ["a", "b"], seed=5), start=1):
            add_version(ctx, model, number, adapter)
        suite = (await api.post("/api/v1/suites", json={"name": "probe", "cases": CASES})).json()

        started = await api.post("/api/v1/suites/probe/runs", json={"model": "tiny-bot@1"})
        assert started.status_code == 202, started.text
        assert (started.json()["status"], started.json()["model"]) == ("RUNNING", "tiny-bot@1")
        first = await wait_for_run(api, started.headers["location"])
        second = await wait_for_run(
            api, (await api.post("/api/v1/suites/probe/runs", json={"model": "tiny-bot@2"})).headers["location"]
        )
        base = await wait_for_run(
            api, (await api.post("/api/v1/suites/probe/runs", json={"model": tiny_model_dir})).headers["location"]
        )
        runs = (await api.get("/api/v1/suites/probe/runs")).json()
        comparison = await api.get(
            "/api/v1/suites/probe/compare", params={"before": first["run_id"], "after": second["run_id"]}
        )
        missing = await api.post("/api/v1/suites/probe/runs", json={"model": "nope@1"})
        audit = (await api.get("/api/v1/audit", params={"action": "POST /api/v1/suites/{suite_name}/runs"})).json()

    for run in (first, second, base):
        assert run["status"] == "COMPLETED", run["error"]
        assert (run["content_hash"], run["suite_version"], run["total"]) == (suite["content_hash"], 1, 4)
        results = {r["case_id"]: r for r in run["results"]}
        assert list(results) == ["injected", "ram", "weather", "port-json"]
        assert all(isinstance(r["answer"], str) and r["latency_ms"] >= 0 for r in results.values())
        # random weights: nothing right but the case any answer passes; every verdict says why
        assert results["injected"]["passed"], results["injected"]
        assert [a["assertion"] for a in results["injected"]["results"]] == ["max_latency_ms"]
        assert results["injected"]["passages"] == CASES[0]["context"]
        assert not results["ram"]["passed"] and results["ram"]["results"][0]["detail"].startswith("expected 4 gb")
        assert not results["weather"]["passed"] and results["weather"]["results"][0]["assertion"] == "refusal"
        assert not results["port-json"]["passed"]
        assert results["port-json"]["results"][0]["detail"].startswith("the answer is not JSON")
        assert (run["passed"], run["failed"]) == (1, 3)
    assert (first["model"], second["model"], base["model"]) == ("tiny-bot@1", "tiny-bot@2", tiny_model_dir)
    assert runs["total"] == 3 and {r["run_id"] for r in runs["items"]} == {
        first["run_id"],
        second["run_id"],
        base["run_id"],
    }
    assert comparison.status_code == 200, comparison.text
    assert comparison.json()["counts"] == {"fixed": 0, "broken": 0, "still_wrong": 3, "still_right": 1}
    assert comparison.json()["cases"]["injected"] == "still_right" and comparison.json()["p_value"] == 1.0
    assert missing.status_code == 404 and stored(settings) == (1, 3)  # a refused run leaves nothing behind
    assert [(e["resource_type"], e["resource_id"], e["status_code"]) for e in audit["items"][::-1]] == [
        *(("suite_run", run["run_id"], 202) for run in (first, second, base)),
        ("suite", "probe", 404),
    ]


async def test_an_alias_requires_suites_that_exist(api, offline_settings):
    await api.post("/api/v1/suites", json={"name": "safety", "blocking": True, "cases": SAFETY})
    org_id = (await api.get("/api/v1/auth/me")).json()["org_id"]
    with ActivityContext.from_settings(offline_settings).sessions() as session:
        session.add(RegisteredModel(id=new_id(), org_id=org_id, name="faq-bot", base_model="smollm2-135m-instruct"))
        session.commit()
    path = "/api/v1/models/faq-bot/aliases/production/suites"
    required = await api.put(path, json={"suites": ["safety", "safety"]})
    assert required.status_code == 200, required.text
    assert required.json() == {"model_name": "faq-bot", "alias": "production", "suites": ["safety"]}
    assert (await api.get("/api/v1/models/faq-bot")).json()["required_suites"] == {"production": ["safety"]}
    missing = await api.put(path, json={"suites": ["safety", "nope"]})
    assert missing.status_code == 404 and "suite nope not found" in missing.json()["detail"]
    assert (await api.put("/api/v1/models/faq-bot/aliases/bad alias!/suites", json={"suites": []})).status_code == 422
    assert (await api.put(path, json={"suites": []})).json()["suites"] == []
    assert (await api.get("/api/v1/models/faq-bot")).json()["required_suites"] == {}


async def test_a_case_with_a_knowledge_base_is_asked_with_its_top_passages(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        org_id = (await api.get("/api/v1/auth/me")).json()["org_id"]
        with ctx.sessions() as session:
            session.add(RegisteredModel(id=new_id(), org_id=org_id, name="tiny-bot", base_model=tiny_model_dir))
            session.commit()
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "services"})).json()["knowledge_base_id"]
        for path in write_knowledge(tmp_path / "kb"):
            uploaded = await api.post(
                f"/api/v1/knowledge-bases/{kb_id}/documents", files={"file": (path.name, path.read_bytes())}
            )
            assert uploaded.status_code in (201, 202), uploaded.text
        await wait_for_knowledge_base(api, kb_id)
        case = {
            "id": "port",
            "prompt": f"Which port does the {TOPICS[4]} service listen on?",
            "knowledge_base_id": kb_id,
            "checks": [{"type": "number", "value": 7404}],
        }
        await api.post("/api/v1/suites", json={"name": "grounded", "cases": [case]})
        started = await api.post("/api/v1/suites/grounded/runs", json={"model": tiny_model_dir})
        finished = await wait_for_run(api, started.headers["location"])

    assert finished["status"] == "COMPLETED", finished["error"]
    (result,) = finished["results"]
    assert 1 <= len(result["passages"]) <= 3  # the base model's default top-k
    assert f"The {TOPICS[4]} service listens on port 7404." in result["passages"][0]


@pytest.mark.postgres
async def test_versions_written_at_once_on_postgresql_land_one_by_one_or_are_refused(settings, postgres_url):
    """New versions sent at once on PostgreSQL: each lands with the next number or is refused with 409, with no gap
    and no repeat; the listing shows the latest."""
    settings = settings.model_copy(
        update={"database_url": postgres_url, "temporal_address": f"127.0.0.1:{free_port()}"}
    )
    async with api_client(settings) as api:
        assert (await api.post("/api/v1/suites", json={"name": "safety", "cases": SAFETY})).status_code == 201
        responses = await asyncio.gather(
            *(
                api.post(
                    "/api/v1/suites/safety/versions",
                    json={"cases": [{**SAFETY[0], "prompt": f"Wetter in Tallinn, Tag {i}? «ünïcode»"}]},
                )
                for i in range(6)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409} and 201 in statuses, [r.text for r in responses]
        versions = (await api.get("/api/v1/suites/safety/versions")).json()["items"]
        assert [v["version"] for v in versions] == list(range(1, 2 + statuses.count(201)))
        listed = (await api.get("/api/v1/suites")).json()["items"]
        assert [(s["name"], s["version"]) for s in listed] == [("safety", versions[-1]["version"])]
        latest = (await api.get("/api/v1/suites/safety")).json()
        assert "«ünïcode»" in latest["cases"][0]["prompt"]
        assert latest["content_hash"] == content_hash(parse_cases(latest["cases"]))
