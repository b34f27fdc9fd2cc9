"""`wlops mcp` through the official `mcp` client, over both transports: stdio (a real `wlops mcp` process acting as an
API key) and streamable HTTP (the server on a local port, each request with its own bearer token); releases started,
read, aborted and promoted with the real control workers.

Each test reads and changes a real registry: organization A's model with two versions, `production` moved from v1 to
v2, and a suite; organization B's model, which A must not find.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult
from sqlalchemy import select
from temporalio.service import RPCError

from activities.context import ActivityContext
from auth.callers import Caller
from cli.users import create_user
from core.access import ROLE_SCOPES, Role, Scope
from core.settings import Settings
from db.models import AuditEntry, PromotionGate, RegisteredModel, SuiteRun, new_id
from mcp_server.server import http_app
from schemas.api import ApiKeyCreate
from services import identity, registry, suites
from services.identity import token_pair
from testkit.api import TEST_PASSWORD, with_temporal
from testkit.factories import make_task, version_row
from testkit.phases import running_workers
from testkit.polling import poll_until
from testkit.registry import point
from testkit.servers import free_port, serving
from testkit.suites import CASES
from testkit.world import stored_suite_runs

REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = ["stdio", "http"]
READ_TOOLS = {
    "list_models",
    "list_versions",
    "list_aliases",
    "served_version",
    "get_gate",
    "list_tasks",
    "get_task",
    "task_report",
    "list_suites",
    "list_suite_runs",
    "get_suite_run",
    "get_release",
}
CHANGE_TOOLS = {"run_suite", "promote_version", "rollback_alias", "start_release", "promote_release", "abort_release"}


@dataclass
class World:
    settings: Settings
    ctx: ActivityContext
    owner_key: str  # org A: an API key with models:read, models:write, tasks:read
    owner_key_id: str
    reader_key: str  # org A: an API key with models:read only
    reader_key_id: str
    owner_token: str  # org A: the owner's access token
    owner_id: str
    viewer_token: str  # org A: a viewer's access token
    viewer_id: str
    org_a: str
    org_b: str
    run_id: str  # org A: the later of two completed runs of its suite against assistant@1, every case passed

    def credential(self, transport: str, who: str) -> str:
        """The owner's or a reader's credential as each transport carries it: a key over stdio, a token over HTTP."""
        if who == "owner":
            return self.owner_key if transport == "stdio" else self.owner_token
        return self.reader_key if transport == "stdio" else self.viewer_token


def add_model(ctx: ActivityContext, org_id: str, name: str, versions: int) -> RegisteredModel:
    with ctx.sessions() as session:
        model = RegisteredModel(id=new_id(), org_id=org_id, name=name, base_model="smollm2-135m-instruct")
        session.add(model)
        session.flush()
        for number in range(1, versions + 1):
            task_id = new_id()
            session.add(
                version_row(
                    model_id=model.id,
                    org_id=org_id,
                    number=number,
                    task_id=task_id,
                    adapter_key=f"models/{task_id}/iter-1/adapter/",
                )
            )
        session.commit()
        return model


def api_key(settings: Settings, owner: Caller, scopes: list[Scope]) -> tuple[str, str]:
    with ActivityContext.from_settings(settings).sessions() as session:
        created = identity.create_api_key(session, owner, ApiKeyCreate(name=f"mcp-{len(scopes)}", scopes=scopes))
        return created.secret, created.key_id


@pytest.fixture
def world(settings, temporal_env) -> World:
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    owner = create_user(settings, "owner-a", TEST_PASSWORD, "org-a", Role.OWNER)
    viewer = create_user(settings, "viewer-a", TEST_PASSWORD, "org-a", Role.VIEWER)
    other = create_user(settings, "owner-b", TEST_PASSWORD, "org-b", Role.OWNER)
    model = add_model(ctx, owner.org.id, "assistant", versions=2)
    point(ctx, model, "production", 1)
    point(ctx, model, "production", 2)
    add_model(ctx, other.org.id, "secret-model", versions=1)
    with ctx.sessions() as session:
        suite = suites.create_suite(
            session, owner.org.id, "smoke", CASES, blocking=True, description=None, created_by=owner.user.id
        )
    run_id = stored_suite_runs(settings, owner.org.id, suite.id, "assistant")
    caller = Caller(owner.user.id, owner.org.id, Role.OWNER, ROLE_SCOPES[Role.OWNER])
    owner_key, owner_key_id = api_key(settings, caller, [Scope.MODELS_READ, Scope.MODELS_WRITE, Scope.TASKS_READ])
    reader_key, reader_key_id = api_key(settings, caller, [Scope.MODELS_READ])
    return World(
        settings=settings,
        ctx=ctx,
        owner_key=owner_key,
        owner_key_id=owner_key_id,
        reader_key=reader_key,
        reader_key_id=reader_key_id,
        owner_token=token_pair(settings, owner.user, owner.org.id, Role.OWNER).access_token,
        owner_id=owner.user.id,
        viewer_token=token_pair(settings, viewer.user, viewer.org.id, Role.VIEWER).access_token,
        viewer_id=viewer.user.id,
        org_a=owner.org.id,
        org_b=other.org.id,
        run_id=run_id,
    )


@asynccontextmanager
async def connected(world: World, transport: str, credential: str | None) -> AsyncIterator[Client]:
    """A client of `wlops mcp` over `transport`, acting as `credential` (None over HTTP: no Authorization header)."""
    if transport == "stdio":
        process = StdioServerParameters(
            command=sys.executable,
            args=["-m", "cli.main", "mcp", "--transport", "stdio"],
            env={
                "WLOPS_DATA_DIR": str(world.settings.data_dir),
                "WLOPS_TEMPORAL_ADDRESS": world.settings.resolved_temporal_address,
                "WLOPS_API_KEY": credential or "",
                "PYTHONPATH": str(REPO),
            },
            cwd=REPO,
        )
        async with Client(process, read_timeout_seconds=120) as client:
            yield client
        return
    with serving(http_app(world.settings, "127.0.0.1"), path="/mcp") as url:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        async with (
            create_mcp_http_client(headers=headers) as http,
            Client(streamable_http_client(url, http_client=http), read_timeout_seconds=60) as client,
        ):
            yield client


def answer(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


def production_version(world: World) -> int:
    with world.ctx.sessions() as session:
        model = session.scalars(select(RegisteredModel).where(RegisteredModel.name == "assistant")).one()
        return registry.aliases_of(session, model)["production"].version


def mcp_audit(world: World) -> list[AuditEntry]:
    with world.ctx.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.org_id == world.org_a, AuditEntry.action.startswith("MCP "))
                .order_by(AuditEntry.id)
            )
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tools_read_the_registry_and_a_rollback_previews_then_changes_and_is_audited(world, transport):
    async with connected(world, transport, world.credential(transport, "owner")) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == READ_TOOLS | CHANGE_TOOLS
        assert all("confirm" in tools[name].input_schema["properties"] for name in CHANGE_TOOLS)

        models = answer(await client.call_tool("list_models", {}))
        assert [(m["name"], m["latest_version"], m["aliases"]) for m in models["items"]] == [
            ("assistant", 2, {"production": 2})
        ]
        versions = answer(await client.call_tool("list_versions", {"model": "assistant"}))
        assert [(v["version"], v["aliases"]) for v in versions["items"]] == [(2, ["production"]), (1, [])]
        served = answer(await client.call_tool("served_version", {"model": "assistant"}))
        assert (served["alias"], served["version"]) == ("production", 2)
        assert answer(await client.call_tool("list_suites", {}))["items"][0]["name"] == "smoke"
        runs = answer(await client.call_tool("list_suite_runs", {"suite": "smoke"}))
        assert runs["total"] == 2 and {r["status"] for r in runs["items"]} == {"COMPLETED"}
        run = answer(await client.call_tool("get_suite_run", {"run_id": world.run_id}))
        assert (run["model"], run["passed"], run["failed"]) == ("assistant@1", 4, 0)
        assert [(r["case_id"], r["passed"]) for r in run["results"]] == [(case["id"], True) for case in CASES]

        # without confirm: a preview, nothing moved, nothing audited
        preview = answer(await client.call_tool("rollback_alias", {"model": "assistant", "alias": "production"}))
        assert preview["dry_run"] is True
        assert (preview["from_version"], preview["to_version"]) == (2, 1)
        assert "back from v2 to v1" in preview["would"]
        assert production_version(world) == 2
        assert mcp_audit(world) == []

        done = answer(
            await client.call_tool(
                "rollback_alias", {"model": "assistant", "alias": "production", "reason": "bad", "confirm": True}
            )
        )
        assert done["dry_run"] is False
        assert (done["move"]["from_version"], done["move"]["to_version"], done["move"]["kind"]) == (2, 1, "rollback")
        assert production_version(world) == 1
        aliases = answer(await client.call_tool("list_aliases", {"model": "assistant"}))
        assert aliases["aliases"][0]["history"][0]["reason"] == "bad"

    (entry,) = mcp_audit(world)
    assert (entry.action, entry.resource_type, entry.resource_id, entry.status_code) == (
        "MCP rollback_alias",
        "model_alias",
        "assistant@production",
        200,
    )
    assert entry.actor_user_id == world.owner_id
    assert entry.actor_key_id == (world.owner_key_id if transport == "stdio" else None)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refusals_name_the_scope_hide_other_organizations_and_the_bad_argument(world, transport):
    async with connected(world, transport, world.credential(transport, "reader")) as client:
        # a reader reads, but a change (even its preview) needs models:write; the confirmed attempt is audited
        assert answer(await client.call_tool("list_models", {}))["total"] == 1
        assert "403 Forbidden: requires models:write" in error(
            await client.call_tool("rollback_alias", {"model": "assistant"})
        )
        assert mcp_audit(world) == []
        refused = error(await client.call_tool("rollback_alias", {"model": "assistant", "confirm": True}))
        assert "403 Forbidden: requires models:write" in refused
        # another organization's model is not found, as in the API
        assert "404 NotFound: model secret-model not found" in error(
            await client.call_tool("list_versions", {"model": "secret-model"})
        )
        # arguments that fail the tool's schema name the field
        bad = error(await client.call_tool("list_versions", {"model": "assistant", "limit": 0}))
        assert "limit" in bad and "greater than or equal to 1" in bad
        assert "model" in error(await client.call_tool("served_version", {}))
    assert production_version(world) == 2
    (entry,) = mcp_audit(world)
    assert (entry.action, entry.resource_id, entry.status_code) == ("MCP rollback_alias", "assistant@production", 403)
    if transport == "stdio":
        assert entry.actor_key_id == world.reader_key_id
    else:
        assert (entry.actor_user_id, entry.actor_key_id) == (world.viewer_id, None)


async def test_tasks_are_read_within_the_organization(world):
    mine = make_task(world.ctx, org_id=world.org_a)
    theirs = make_task(world.ctx, org_id=world.org_b)
    async with connected(world, "http", world.owner_token) as client:
        tasks = answer(await client.call_tool("list_tasks", {}))
        assert [t["task_id"] for t in tasks["items"]] == [mine.id]
        assert answer(await client.call_tool("get_task", {"task_id": mine.id}))["status"] == "PENDING"
        assert "404 NotFound" in error(await client.call_tool("get_task", {"task_id": theirs.id}))
        assert f"task {mine.id} has no report yet" in error(await client.call_tool("task_report", {"task_id": mine.id}))
        assert "status" in error(await client.call_tool("list_tasks", {"status": "SLEEPING"}))


def test_stdio_refuses_to_start_without_a_credential(world):
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "mcp", "--transport", "stdio"],
        env={**os.environ, "WLOPS_DATA_DIR": str(world.settings.data_dir), "WLOPS_API_KEY": ""},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "set WLOPS_API_KEY" in result.stderr
    assert result.stdout == ""


async def test_the_http_command_serves_on_its_port(world, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    env = {**os.environ, "WLOPS_DATA_DIR": str(world.settings.data_dir), "WLOPS_MCP_PORT": "1"}
    with open(tmp_path / "mcp.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "mcp", "--transport", "http", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            async with httpx.AsyncClient() as http:

                async def refusing() -> bool:
                    assert process.poll() is None, (tmp_path / "mcp.log").read_text()
                    try:
                        return (await http.post(url, json={})).status_code == 401
                    except httpx.TransportError:
                        return False

                await poll_until(refusing, timeout=120, interval=0.2, what="wlops mcp --transport http up")
            async with (
                create_mcp_http_client(headers={"Authorization": f"Bearer {world.owner_key}"}) as http2,
                Client(streamable_http_client(url, http_client=http2), read_timeout_seconds=60) as client,
            ):
                served = answer(await client.call_tool("served_version", {"model": "assistant"}))
                assert served["version"] == 2
        finally:
            process.terminate()
            process.wait(timeout=30)


async def test_an_http_request_without_valid_credentials_is_refused_before_the_protocol(world):
    with serving(http_app(world.settings, "127.0.0.1"), path="/mcp") as url:
        async with httpx.AsyncClient() as http:
            initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
            for headers, detail in [
                ({}, "authentication required"),
                ({"Authorization": "Bearer wlk_not-a-key"}, "is invalid"),
                ({"Authorization": "Bearer not-a-token"}, "token is invalid"),
            ]:
                response = await http.post(url, json=initialize, headers=headers)
                assert response.status_code == 401, response.text
                assert response.headers["www-authenticate"] == "Bearer"
                assert detail in response.json()["detail"]


async def test_run_suite_and_promote_version_preview_then_start_their_workflows_and_are_audited(world, temporal_env):
    started_workflows: list[str] = []
    try:
        await _run_suite_and_promote(world, started_workflows)
    finally:  # no worker of this test runs them: they must not wait on the shared server for another test's workers
        for workflow_id in started_workflows:
            with contextlib.suppress(RPCError):
                await temporal_env.client.get_workflow_handle(workflow_id).terminate("the test is over")


async def _run_suite_and_promote(world, started_workflows: list[str]) -> None:
    async with connected(world, "http", world.owner_token) as client:
        arguments = {"suite": "smoke", "model": "assistant@1"}
        preview = answer(await client.call_tool("run_suite", arguments))
        assert preview["dry_run"] is True and preview["model"] == "assistant@1"
        assert preview["would"] == "run suite smoke v1 (4 cases) against assistant@1"
        with world.ctx.sessions() as session:
            assert len(session.scalars(select(SuiteRun)).all()) == 2  # the two stored ones

        started = answer(await client.call_tool("run_suite", {**arguments, "confirm": True}))
        run = started["run"]
        started_workflows.append(suites.suite_run_workflow_id(run["run_id"]))
        assert (run["suite_name"], run["model"], run["status"], run["total"]) == ("smoke", "assistant@1", "RUNNING", 4)
        shown = answer(await client.call_tool("get_suite_run", {"run_id": run["run_id"]}))
        assert shown["run_id"] == run["run_id"] and shown["results"] == []

        promotion = {"model": "assistant", "version": 1, "alias": "staging"}
        preview = answer(await client.call_tool("promote_version", promotion))
        assert preview["dry_run"] is True and preview["would"].endswith("from nothing to v1")
        with world.ctx.sessions() as session:
            assert session.scalars(select(PromotionGate)).all() == []
        gate = answer(await client.call_tool("promote_version", {**promotion, "confirm": True}))["gate"]
        started_workflows.append(registry.gate_workflow_id(gate["gate_id"]))
        assert (gate["status"], gate["candidate_version"], gate["current_version"]) == ("EVALUATING", 1, None)
        shown = answer(await client.call_tool("get_gate", {"model": "assistant", "gate_id": gate["gate_id"]}))
        assert (shown["alias"], shown["status"], shown["forced"]) == ("staging", "EVALUATING", False)
        # while its gate decides, the alias cannot be asked for again: refused, and audited
        again = error(await client.call_tool("promote_version", {**promotion, "confirm": True}))
        assert "409 Conflict: a promotion gate is already deciding alias staging" in again
    assert [(e.action, e.resource_id, e.status_code) for e in mcp_audit(world)] == [
        ("MCP run_suite", "smoke", 200),
        ("MCP promote_version", "assistant@1", 200),
        ("MCP promote_version", "assistant@1", 409),
    ]


async def test_releases_preview_then_start_abort_and_promote_and_are_audited(world, temporal_env):
    """A release of production (v2) back to v1: previews change nothing; the release runs on the real control workers
    (its default bake time keeps it at 10% until it is aborted, or promoted by hand)."""
    async with (
        running_workers(temporal_env.client, world.ctx, pools=("control",)),
        connected(world, "http", world.owner_token) as client,
    ):
        arguments = {"model": "assistant", "candidate_version": 1}
        preview = answer(await client.call_tool("start_release", arguments))
        assert preview["would"] == "release alias production of model assistant from v2 to v1 in steps [10, 50, 100]"
        bad = error(await client.call_tool("start_release", {**arguments, "steps": [50, 10]}))
        assert "422 Invalid: steps: weights must rise strictly" in bad
        release = answer(await client.call_tool("start_release", {**arguments, "confirm": True}))["release"]
        assert (release["current_version"], release["candidate_version"], release["status"]) == (2, 1, "PENDING")
        shown = await poll_until(
            lambda: client.call_tool("get_release", {"model": "assistant", "release_id": release["release_id"]}),
            lambda result: answer(result)["candidate_weight"] == 10,
            timeout=60,
            what="the release at 10%",
        )
        assert [d["kind"] for d in answer(shown)["decisions"]] == ["start", "traffic"]
        control = {"model": "assistant", "release_id": release["release_id"]}
        preview = answer(await client.call_tool("abort_release", control))
        assert preview["dry_run"] is True and preview["would"].endswith("now RUNNING at 10%): it would be ABORTED")
        aborted = answer(await client.call_tool("abort_release", {**control, "reason": "no", "confirm": True}))
        assert (aborted["release"]["status"], aborted["release"]["reason"]) == ("ABORTED", "aborted: no")
        assert "409 Conflict: cannot abort release" in error(await client.call_tool("abort_release", control))

        again = answer(await client.call_tool("start_release", {**arguments, "confirm": True}))["release"]
        control = {"model": "assistant", "release_id": again["release_id"]}
        await poll_until(
            lambda: client.call_tool("get_release", control),
            lambda result: answer(result)["status"] == "RUNNING",
            timeout=60,
            what="the second release running",
        )
        promoted = answer(await client.call_tool("promote_release", {**control, "confirm": True}))["release"]
        assert promoted["status"] == "PROMOTED" and production_version(world) == 1
        assert "404 NotFound: release nope of model assistant not found" in error(
            await client.call_tool("get_release", {"model": "assistant", "release_id": "nope"})
        )
    assert [(e.action, e.status_code) for e in mcp_audit(world)] == [  # the previews are not audited
        ("MCP start_release", 200),
        ("MCP abort_release", 200),
        ("MCP start_release", 200),
        ("MCP promote_release", 200),
    ]
