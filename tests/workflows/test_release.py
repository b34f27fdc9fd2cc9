"""The release workflow on a real Temporal server, with the real control workers and real requests to the real serving
app (the tiny model with two real adapters): a good candidate goes 10% -> 50% -> 100% and moves the alias; a candidate
whose every answer fails, or whose answers are rated down, is rolled back at its first step; a blocking suite the
alias requires, failing on the candidate, rolls it back before any traffic; too little traffic pauses the release,
and resume carries it on; the controls (updates with validators); and a worker stopped mid-release, plus decisions
that die after their commit, a `wlops worker` process SIGKILLed mid-release, and a Temporal server SIGKILLed
mid-release, still change the traffic and move the alias exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.context import ActivityContext
from activities.releases import ReleaseActivities
from activities.suites import SuiteActivities
from cli.users import create_user
from core.access import Role, Scope
from core.errors import Conflict, Forbidden
from core.settings import TASK_QUEUE_BOOKKEEPING, TASK_QUEUE_EVALUATE
from db.models import AliasMove, AuditEntry, ModelVersion, QAEntry, RegisteredModel, Release, SuiteRun, new_id
from ml.release import CANDIDATE, CURRENT, Thresholds
from schemas.workflow_io import ReleaseDecisionInput, ReleaseDecisionResult, ShadowReleaseInput, ShadowReleaseResult
from services import qa, registry, releases, suites
from services.identity import token_pair
from services.registry import Actor
from serving.app import create_serving_app
from suites.cases import parse_cases
from testkit.api import TEST_PASSWORD
from testkit.histories import record_history
from testkit.model import random_adapters
from testkit.phases import running_workers as workers
from testkit.polling import poll_until
from testkit.registry import add_version, point
from testkit.releases import start_release, traffic
from testkit.servers import free_port, serving
from testkit.suites import CASES
from workers.pools import activities_by_queue

STEPS = [10, 50, 100]
# short waits; latency is left out of these runs (a shared 2-core machine's p95 is noise), its rule is unit-tested
QUICK = Thresholds(bake_seconds=1.0, min_requests=3, max_wait_seconds=90, poll_seconds=0.3, latency_slack_ms=60_000)
OWNER = Actor("owner", None, frozenset({Scope.MODELS_WRITE, Scope.MODELS_FORCE}))


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    return random_adapters(tiny_model_dir, tmp_path_factory.mktemp("release-adapters"), ["v1", "v2"], seed=5)


@pytest.fixture
def world(settings, tiny_model_dir, adapters):
    """Model `bot`: production at version 1, version 2 the candidate; the serving app answering for it."""
    settings = settings.model_copy(update={"serve_max_tokens": 8, "serve_batch_window_ms": 5})
    ctx = ActivityContext.from_settings(settings)
    owner = create_user(settings, "olga", TEST_PASSWORD, "release-org", Role.OWNER)
    with ctx.sessions() as session:
        model = RegisteredModel(id=new_id(), org_id=owner.org.id, name="bot", base_model=tiny_model_dir)
        session.add(model)
        session.commit()
    for number, adapter in enumerate(adapters, start=1):
        add_version(ctx, model, number, adapter)
    point(ctx, model, "production", 1)
    token = token_pair(settings, owner.user, owner.org.id, Role.OWNER).access_token
    with serving(create_serving_app(settings)) as base_url:
        yield ctx, model, base_url, token


async def start(client, ctx, model, thresholds: Thresholds = QUICK):
    return await start_release(client, ctx, model, steps=STEPS, thresholds=thresholds, actor=OWNER)


def decisions(ctx, release_id: str) -> list[tuple[str, str, int, str]]:
    with ctx.sessions() as session:
        return [(d.kind, d.key, d.candidate_weight, d.status) for d in releases.decisions_of(session, release_id)]


def production(ctx, model) -> int:
    with ctx.sessions() as session:
        return registry.aliases_of(session, session.get_one(RegisteredModel, model.id))["production"].version


async def wait_for(ctx, release_id: str, *statuses: str, timeout: float = 120) -> Release:
    def row() -> Release:
        with ctx.sessions() as session:
            return session.get_one(Release, release_id)

    return await poll_until(row, lambda r: r.status in statuses, timeout=timeout, interval=0.1, what=f"{statuses}")


async def test_a_good_candidate_goes_10_50_100_and_moves_the_alias(temporal_env, world):
    ctx, model, base_url, token = world
    async with workers(temporal_env.client, ctx, pools=("control",)):
        with traffic(base_url, token) as generator:
            release_id, handle = await start(temporal_env.client, ctx, model)
            result = await handle.result()
        await record_history(handle, "release-promoted")
    assert (result.status, result.reason) == ("PROMOTED", "every step of [10, 50, 100] passed its analysis")
    assert production(ctx, model) == 2
    assert decisions(ctx, release_id) == [
        ("start", "start", 0, "RUNNING"),
        ("traffic", "traffic-0", 10, "RUNNING"),
        ("analysis", "analysis-0", 10, "RUNNING"),
        ("traffic", "traffic-1", 50, "RUNNING"),
        ("analysis", "analysis-1", 50, "RUNNING"),
        ("traffic", "traffic-2", 100, "RUNNING"),
        ("analysis", "analysis-2", 100, "RUNNING"),
        ("promote", "promote", 100, "PROMOTED"),
    ]
    with ctx.sessions() as session:
        analyses = [d.figures for d in releases.decisions_of(session, release_id) if d.kind == "analysis"]
        rows = session.execute(
            select(QAEntry.conversation_id, QAEntry.model, QAEntry.release_arm).where(QAEntry.release_id == release_id)
        ).all()
        moves = registry.alias_history(session, session.get_one(RegisteredModel, model.id), "production")
    assert [a["weight"] for a in analyses] == STEPS and all(a["candidate"]["requests"] >= 3 for a in analyses)
    assert all(a["current"]["requests"] >= 3 for a in analyses[:2]) and analyses[2]["current"]["requests"] == 0
    assert all(a["candidate"]["errors"] == 0 for a in analyses)
    # each arm is answered by its own version, each answer names it, and a conversation never changes arms
    assert {(m, arm) for _, m, arm in rows} == {("bot@1", "current"), ("bot@2", "candidate")}
    answered = {(conversation, version) for conversation, code, version in generator.answered if code == 200}
    assert {version for _, version in answered} == {"bot@1", "bot@2"}
    assert max(Counter(conversation for conversation, _ in answered).values()) == 1
    assert [(m.from_version, m.to_version, m.kind) for m in moves][0] == (1, 2, "release")


async def test_a_candidate_that_fails_is_rolled_back_at_its_first_step(temporal_env, world):
    ctx, model, base_url, token = world
    with ctx.sessions() as session:  # its adapter no longer matches its checksum: serving refuses every answer of it
        candidate = session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == 2)
        ).one()
        candidate.sha256 = "f" * 64
        session.commit()
    async with workers(temporal_env.client, ctx, pools=("control",)):
        with traffic(base_url, token) as generator:
            release_id, handle = await start(temporal_env.client, ctx, model)
            result = await handle.result()
            rolled_back_at = len(generator.answered)
            await asyncio.sleep(1)  # requests after the rollback: the current version answers them all
        await record_history(handle, "release-rolled-back")
    assert result.status == "ROLLED_BACK" and "step 1: the candidate failed: error rate 1.000 > 0.0" in result.reason
    assert production(ctx, model) == 1
    kinds = decisions(ctx, release_id)
    assert (
        kinds[-1] == ("rollback", "rollback", 0, "ROLLED_BACK") and ("traffic", "traffic-1", 50, "RUNNING") not in kinds
    )
    with ctx.sessions() as session:
        figures = releases.decisions_of(session, release_id)[-1].figures
        release = session.get_one(Release, release_id)
    assert figures["weight"] == 10 and figures["candidate"]["error_rate"] == 1.0 and figures["current"]["errors"] == 0
    assert (release.candidate_weight, release.finished_at is not None) == (0, True)
    after = generator.answered[rolled_back_at + 2 :]  # (two may have been routed before the rollback)
    assert after and {(code, version) for _, code, version in after} == {(200, "bot@1")}


async def test_a_candidate_whose_answers_are_rated_down_is_rolled_back(temporal_env, world):
    """Every answer of the candidate is rated down by its asker right after it comes (as users would, through the
    history's feedback); the current version's are not."""
    ctx, model, base_url, token = world

    def rate(conversation: str, version: str) -> None:
        if version == "bot@2":
            with ctx.sessions() as session:
                entry = session.scalars(select(QAEntry).where(QAEntry.conversation_id == conversation)).one()
                qa.give_feedback(session, entry.org_id, entry.id, rating="down", corrected_answer=None, user_id=None)

    async with workers(temporal_env.client, ctx, pools=("control",)):
        with traffic(base_url, token, after=rate):
            release_id, handle = await start(temporal_env.client, ctx, model)
            result = await handle.result()
    assert result.status == "ROLLED_BACK" and "step 1: the candidate failed: rated down" in result.reason, result.reason
    assert production(ctx, model) == 1
    with ctx.sessions() as session:
        figures = releases.decisions_of(session, release_id)[-1].figures
    assert figures["candidate"]["errors"] == 0 and figures["candidate"]["rated_down"] >= 1
    assert figures["current"]["rated_down"] == 0


async def test_too_little_traffic_pauses_and_resume_carries_on_with_the_controls(temporal_env, world):
    ctx, model, base_url, token = world
    client = temporal_env.client

    async def temporal():
        return client

    async def control(action: str, actor: Actor = OWNER):
        with ctx.sessions() as session:
            release = session.get_one(Release, release_id)
            return await releases.control(session, temporal, release, action, actor, reason=f"{action} in a test")

    async with workers(client, ctx, pools=("control",)):
        release_id, handle = await start(
            client,
            ctx,
            model,
            Thresholds(bake_seconds=0.5, min_requests=1, max_wait_seconds=6, poll_seconds=0.3, latency_slack_ms=60_000),
        )
        paused = await wait_for(ctx, release_id, "PAUSED")
        assert paused.reason == (
            "paused at step 1 after 6 s: too little data: current has 0 of 1 requests; candidate has 0 of 1 requests"
        )
        assert paused.candidate_weight == 10  # kept for the resume; serving splits only a RUNNING release
        with pytest.raises(Conflict, match="cannot pause release .*: it is PAUSED"):
            await control("pause")
        member = Actor("member", None, frozenset({Scope.MODELS_WRITE}))
        with pytest.raises(Forbidden, match="requires models:force"):
            await control("promote", member)
        with traffic(base_url, token):
            resumed = await control("resume")
            assert resumed.status == "RUNNING"
            with pytest.raises(Conflict, match="cannot resume release .*: it is RUNNING"):
                await control("resume")
            await wait_for(ctx, release_id, "RUNNING")
            await poll_until(
                lambda: decisions(ctx, release_id),
                lambda d: any(key == "traffic-1" for _, key, _, _ in d),
                timeout=120,
                what="step 2",
            )
            assert (await control("pause")).status == "PAUSED"
            promoted = await control("promote")
        result = await handle.result()
        await record_history(handle, "release-controls")
    assert promoted.status == result.status == "PROMOTED" and production(ctx, model) == 2
    kinds = [(kind, key) for kind, key, _, _ in decisions(ctx, release_id)]
    assert kinds == [
        ("start", "start"),
        ("traffic", "traffic-0"),
        ("pause", "pause-1"),
        ("resume", "resume-1"),
        ("analysis", "analysis-0"),
        ("traffic", "traffic-1"),
        ("pause", "pause-2"),
        ("promote", "promote"),
    ]
    with ctx.sessions() as session:
        last = releases.decisions_of(session, release_id)[-1]
        assert (last.reason, last.actor_user_id) == ("promoted by hand: promote in a test", "owner")
        with pytest.raises(Conflict, match="it is PROMOTED"):
            await releases.control(session, temporal, session.get_one(Release, release_id), "abort", OWNER)


async def test_an_abort_stops_the_release_and_an_alias_moved_under_one_stops_it(temporal_env, world):
    ctx, model, _, _ = world
    client = temporal_env.client

    async def temporal():
        return client

    slow = Thresholds(bake_seconds=30, min_requests=3, max_wait_seconds=60, poll_seconds=0.3)
    async with workers(client, ctx, pools=("control",)):
        release_id, handle = await start(client, ctx, model, slow)
        await wait_for(ctx, release_id, "RUNNING")
        with ctx.sessions() as session:
            with pytest.raises(Conflict, match="is already RUNNING on alias production"):
                releases.open_release(
                    session,
                    session.get_one(RegisteredModel, model.id),
                    2,
                    alias="production",
                    steps=STEPS,
                    thresholds=slow,
                    actor=OWNER,
                )
            aborted = await releases.control(session, temporal, session.get_one(Release, release_id), "abort", OWNER)
        assert aborted.status == "ABORTED" and (await handle.result()).status == "ABORTED"

        # another release; the alias moves under it (a forced promotion, say): at its next traffic change it stops
        again, handle = await start(client, ctx, model, Thresholds(bake_seconds=1, min_requests=1, poll_seconds=0.3))
        await poll_until(
            lambda: decisions(ctx, again), lambda d: any(k == "traffic-0" for _, k, _, _ in d), timeout=60, what="10%"
        )
        point(ctx, model, "production", 2)  # before the step has any request: its analysis finds the alias moved
        result = await handle.result()
    assert result.status == "ABORTED" and "alias production now points at version 2, not at version 1" in result.reason
    assert decisions(ctx, again)[-1] == ("stopped", "analysis-0", 0, "ABORTED")
    with ctx.sessions() as session:
        moves = registry.alias_history(session, session.get_one(RegisteredModel, model.id), "production")
        assert [m.kind for m in moves] == ["forced", "forced"]  # the release moved nothing


class DiesAfterCommit:
    """The real `decide_release`, whose first attempt at the named decisions dies after the database commit and before
    Temporal hears of it (as a worker killed at that moment would): the retry must change nothing more."""

    def __init__(self, ctx: ActivityContext, keys: set[str]):
        self.real = ReleaseActivities(ctx)
        self.keys = keys
        self.died: list[str] = []

    @activity.defn(name="decide_release")
    def decide_release(self, inp: ReleaseDecisionInput) -> ReleaseDecisionResult:
        result = self.real.decide_release(inp)
        if inp.key in self.keys and activity.info().attempt == 1:
            self.died.append(inp.key)
            raise RuntimeError(f"worker lost after committing {inp.key}")
        return result


async def test_a_worker_stopped_mid_release_changes_traffic_and_moves_the_alias_exactly_once(temporal_env, world):
    from workers.pools import activities_by_queue

    ctx, model, base_url, token = world
    client = temporal_env.client
    dying = DiesAfterCommit(ctx, {"traffic-1", "promote"})
    activities = activities_by_queue(ctx)
    activities[TASK_QUEUE_BOOKKEEPING] = [
        dying.decide_release if getattr(a, "__name__", "") == "decide_release" else a
        for a in activities[TASK_QUEUE_BOOKKEEPING]
    ]
    with traffic(base_url, token):
        async with workers(client, ctx, activities, pools=("control",)):
            release_id, handle = await start(client, ctx, model)
            await poll_until(
                lambda: decisions(ctx, release_id),
                lambda d: any(key == "traffic-1" for _, key, _, _ in d),
                timeout=120,
                what="step 2's traffic change",
            )
        # the workers are stopped: the release waits, serving keeps splitting at 50%
        await asyncio.sleep(2)
        async with workers(client, ctx, activities, pools=("control",)):
            result = await handle.result()
    assert result.status == "PROMOTED" and production(ctx, model) == 2
    assert sorted(set(dying.died)) == ["promote", "traffic-1"]
    kinds = Counter(kind for kind, _, _, _ in decisions(ctx, release_id))
    assert (kinds["traffic"], kinds["promote"]) == (3, 1)
    with ctx.sessions() as session:
        moves = session.scalar(select(func.count()).where(AliasMove.model_id == model.id, AliasMove.kind == "release"))
        audited = session.scalars(select(AuditEntry.action).where(AuditEntry.resource_id == release_id)).all()
    assert moves == 1
    assert sum("traffic: RUNNING" in a for a in audited) == 3 and sum("promote: PROMOTED" in a for a in audited) == 1


async def test_a_blocking_suite_the_alias_requires_rolls_the_release_back_before_any_traffic(temporal_env, world):
    """The suites run for real against the candidate on the tiny model (evaluate pool), as the promotion gate runs
    them: `safety` has three cases a model with random weights fails; `quick` one it passes; `style` fails but does not
    block (and is not run)."""
    ctx, model, _, _ = world
    with ctx.sessions() as session:
        for name, cases, blocking in (("safety", CASES, True), ("quick", CASES[:1], True), ("style", CASES, False)):
            suites.create_suite(
                session, model.org_id, name, cases, blocking=blocking, description=None, created_by=None
            )
        suites.require_suites(session, session.get_one(RegisteredModel, model.id), "production", ["safety", "style"])
    slow = Thresholds(bake_seconds=60, min_requests=3, max_wait_seconds=120, poll_seconds=0.3)
    async with workers(temporal_env.client, ctx, pools=("control", "evaluate")):
        refused_id, handle = await start(temporal_env.client, ctx, model, slow)
        refused = await handle.result()
        with ctx.sessions() as session:
            suites.require_suites(session, session.get_one(RegisteredModel, model.id), "production", ["quick", "style"])
        passed_id, handle = await start(temporal_env.client, ctx, model, slow)
        await poll_until(
            lambda: decisions(ctx, passed_id),
            lambda d: any(key == "traffic-0" for _, key, _, _ in d),
            timeout=120,
            what="the first step",
        )

        async def temporal():
            return temporal_env.client

        with ctx.sessions() as session:  # (its bake time is long: end it here)
            await releases.control(session, temporal, session.get_one(Release, passed_id), "abort", OWNER)
        assert (await handle.result()).status == "ABORTED"

    assert refused.status == "ROLLED_BACK", refused.reason
    assert refused.reason.startswith("refused: blocking suite safety v1 failed case 'ram' (check number: expected 4 gb")
    assert "style" not in refused.reason
    assert decisions(ctx, refused_id) == [("start", "start", 0, "RUNNING"), ("rollback", "suites", 0, "ROLLED_BACK")]
    assert production(ctx, model) == 1
    with ctx.sessions() as session:
        runs = session.scalars(select(SuiteRun).where(SuiteRun.release_id.in_([refused_id, passed_id]))).all()
        judged = releases.decisions_of(session, passed_id)[1]
    assert sorted((r.release_id == refused_id, r.suite_name, r.model, r.status) for r in runs) == [
        (False, "quick", "bot@2", "COMPLETED"),
        (True, "safety", "bot@2", "COMPLETED"),
    ]
    assert (judged.kind, judged.reason) == ("suites", "every blocking suite passed")
    assert [(f["suite"], f["passed"], f["failed"]) for f in judged.figures["suites"]] == [("quick", 1, 0)]


async def test_a_sigkilled_control_worker_is_replaced_and_the_release_changes_traffic_and_moves_the_alias_once(
    temporal_env, world, tmp_path
):
    """The control pool runs in a `wlops worker` process, killed with SIGKILL once the second step's traffic change is
    made, then started again; serving (in this process) keeps answering throughout."""
    ctx, model, base_url, token = world
    settings = ctx.settings
    env = {
        **os.environ,
        "WLOPS_DATA_DIR": str(settings.data_dir),
        "WLOPS_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "WLOPS_MODEL_CACHE": str(settings.model_cache_dir),
        "WLOPS_WORKER_METRICS_PORT": str(free_port()),
    }
    with open(tmp_path / "control-worker.log", "ab") as log:

        def start_control_worker() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "cli.main", "worker", "--pool", "control"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        worker = start_control_worker()
        try:
            with traffic(base_url, token) as generator:
                release_id, handle = await start(temporal_env.client, ctx, model)
                await poll_until(
                    lambda: decisions(ctx, release_id),
                    lambda d: any(key == "traffic-1" for _, key, _, _ in d),
                    timeout=180,
                    what="step 2's traffic change",
                )
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                answered_while_down = len(generator.answered)
                await asyncio.sleep(2)
                assert len(generator.answered) > answered_while_down  # serving does not need the workers
                worker = start_control_worker()
                result = await asyncio.wait_for(handle.result(), timeout=240)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(30)
    assert result.status == "PROMOTED", result.reason
    assert production(ctx, model) == 2
    kinds = Counter(kind for kind, _, _, _ in decisions(ctx, release_id))
    assert (kinds["start"], kinds["traffic"], kinds["analysis"], kinds["promote"]) == (1, 3, 3, 1)
    with ctx.sessions() as session:
        moves = session.scalar(select(func.count()).where(AliasMove.model_id == model.id, AliasMove.kind == "release"))
    assert moves == 1
    assert {code for _, code, _ in generator.answered} == {200}  # no client request failed across the kill


async def test_a_temporal_server_sigkilled_mid_release_comes_back_and_the_release_finishes_once(world, tmp_path):
    """The release runs on its own Temporal dev server, keeping its state in a SQLite file as `make dev` does; the
    server is SIGKILLed once the second step's traffic change is made, and started again on the same file."""
    from temporalio.client import Client

    from cli.stack import temporal_dev_server, wait_for_port
    from core.settings import Settings

    ctx, model, base_url, token = world
    ports = Settings(data_dir=tmp_path, temporal_port=free_port(), temporal_ui_port=free_port())
    command = temporal_dev_server(ports, tmp_path / "temporal.db")

    def start_server() -> subprocess.Popen:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(ports.temporal_port, 60, server)
        return server

    server = start_server()
    try:
        client = await Client.connect(f"127.0.0.1:{ports.temporal_port}")
        async with workers(client, ctx, pools=("control",)):
            with traffic(base_url, token) as generator:
                release_id, handle = await start(client, ctx, model)
                await poll_until(
                    lambda: decisions(ctx, release_id),
                    lambda d: any(key == "traffic-1" for _, key, _, _ in d),
                    timeout=180,
                    what="step 2's traffic change",
                )
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                await asyncio.sleep(2)  # serving goes on without Temporal
                server = start_server()
                result = await asyncio.wait_for(handle.result(), timeout=240)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    assert result.status == "PROMOTED", result.reason
    assert production(ctx, model) == 2
    kinds = Counter(kind for kind, _, _, _ in decisions(ctx, release_id))
    assert (kinds["start"], kinds["traffic"], kinds["analysis"], kinds["promote"]) == (1, 3, 3, 1)
    with ctx.sessions() as session:
        moves = session.scalar(select(func.count()).where(AliasMove.model_id == model.id, AliasMove.kind == "release"))
    assert moves == 1
    assert {code for _, code, _ in generator.answered} == {200}


# ---------------------------------------------------------------- the blocking suites in the shadow

RAM = CASES[0]["prompt"]  # "How much RAM does the server need?": the `quick` suite's one case, which any model passes


def require(ctx, model, name: str, cases: list[dict]) -> None:
    with ctx.sessions() as session:
        suites.create_suite(session, model.org_id, name, cases, blocking=True, description=None, created_by=None)
        suites.require_suites(session, session.get_one(RegisteredModel, model.id), "production", [name])


async def test_each_step_asks_its_real_prompts_that_match_a_blocking_case_of_both_versions_in_the_shadow(
    temporal_env, world
):
    """For real on the evaluate pool: the traffic asks the `quick` case's question (and one no case asks); each step's
    analysis asks it of both versions, judged by the case's assertion, and records the shadow's figures."""
    ctx, model, base_url, token = world
    require(ctx, model, "quick", CASES[:1])
    async with workers(temporal_env.client, ctx, pools=("control", "evaluate")):
        with traffic(base_url, token, questions=(RAM, "Which port?")):
            release_id, handle = await start(temporal_env.client, ctx, model)
            result = await handle.result()
        await record_history(handle, "release-shadow")
    assert result.status == "PROMOTED", result.reason
    with ctx.sessions() as session:
        analyses = [d for d in releases.decisions_of(session, release_id) if d.kind == "analysis"]
    assert len(analyses) == 3
    for analysis in analyses:
        shadow = analysis.figures["shadow"]
        assert (shadow["asked"], shadow["still_right"], shadow["broken"], shadow["broken_cases"]) == (1, 1, 0, [])
        assert "1 real prompts asked as blocking cases in the shadow: the current version passed 1" in analysis.reason


async def test_a_candidate_that_breaks_a_blocking_case_in_the_shadow_is_rolled_back(temporal_env, world):
    """The orchestration around the shadow: its failing verdict (the activity replaced here; it runs for real above and
    below) rolls the release back at its first step, with the shadow's reason and figures."""
    ctx, model, base_url, token = world
    require(ctx, model, "quick", CASES[:1])
    figures = {"asked": 1, "broken": 1, "broken_cases": [{"id": "injected#1", "case_id": "injected", "prompt": RAM}]}

    @activity.defn(name="shadow_release_suites")
    def broken_in_the_shadow(inp: ShadowReleaseInput) -> ShadowReleaseResult:
        return ShadowReleaseResult(False, f"1 broken: injected: {RAM!r}", figures)

    queues = activities_by_queue(ctx)
    queues[TASK_QUEUE_EVALUATE] = [SuiteActivities(ctx).run_suite, broken_in_the_shadow]
    async with workers(temporal_env.client, ctx, queues, pools=("control", "evaluate")):
        with traffic(base_url, token, questions=(RAM,)):
            release_id, handle = await start(temporal_env.client, ctx, model)
            result = await handle.result()
    assert result.status == "ROLLED_BACK" and production(ctx, model) == 1
    assert decisions(ctx, release_id) == [
        ("start", "start", 0, "RUNNING"),
        ("suites", "suites", 0, "RUNNING"),
        ("traffic", "traffic-0", 10, "RUNNING"),
        ("rollback", "rollback", 0, "ROLLED_BACK"),
    ]
    with ctx.sessions() as session:
        rollback = releases.decisions_of(session, release_id)[-1]
    assert rollback.reason == f"step 1: the candidate failed: 1 broken: injected: {RAM!r}"
    assert rollback.figures["shadow"] == figures and rollback.figures["candidate"]["requests"] >= 3


async def test_the_shadow_activity_finds_a_prompt_the_candidate_breaks(world):
    """For real (the tiny model, both adapters, the history): a blocking case whose check only the current version's
    answer passes. Asked with the step's real prompts, the one that matches it is broken; with one broken prompt
    allowed, the step passes."""
    ctx, model, _, _ = world
    activities = SuiteActivities(ctx)
    [probe] = parse_cases([{"id": "probe", "prompt": RAM, "max_latency_ms": 600_000}])
    with ctx.sessions() as session:
        targets = {
            arm: suites.RunTarget([], model.base_model, v.adapter_key, 3)
            for arm, v in (
                (CURRENT, registry.get_version(session, model, 1)),
                (CANDIDATE, registry.get_version(session, model, 2)),
            )
        }

    class Beat:
        def update(self, **_):
            pass

    said = {arm: activities._answer(t, [probe], {}, None, Beat())[0]["answer"] for arm, t in targets.items()}
    words = set(re.findall(r"[a-z]{3,}", said[CURRENT].lower())) - set(
        re.findall(r"[a-z]{3,}", said[CANDIDATE].lower())
    )
    assert words, said  # the two adapters answer differently
    require(
        ctx,
        model,
        "facts",
        [{"id": "ram", "prompt": RAM, "checks": [{"type": "contains_any", "values": [min(words)]}]}],
    )
    since = datetime.now(UTC) - timedelta(seconds=1)
    with ctx.sessions() as session:
        release, _ = releases.open_release(
            session,
            session.get_one(RegisteredModel, model.id),
            2,
            alias="production",
            steps=STEPS,
            thresholds=QUICK,
            actor=OWNER,
        )
        for n, (prompt, arm) in enumerate(((RAM, CURRENT), (RAM.lower(), CANDIDATE), ("Which port?", CURRENT))):
            qa.record(
                session,
                org_id=model.org_id,
                conversation_id=f"c{n}",
                model=f"bot@{1 if arm == CURRENT else 2}",
                messages=[{"role": "user", "content": prompt}],
                answer="",
                prompt_tokens=1,
                completion_tokens=1,
                latency_ms=1,
                release_id=release.id,
                release_arm=arm,
            )
        release_id = release.id
    shadow = ActivityEnvironment().run(
        activities.shadow_release_suites, ShadowReleaseInput(release_id, 0, since.isoformat())
    )
    assert not shadow.passed, shadow.reason
    assert (shadow.figures["asked"], shadow.figures["broken"], shadow.figures["current_passed"]) == (1, 1, 1)
    assert shadow.figures["broken_cases"] == [{"id": "ram#1", "case_id": "ram", "prompt": RAM}]
    assert shadow.reason.endswith(f"more than 0 broken: ram: {RAM!r}")
    with ctx.sessions() as session:
        session.get_one(Release, release_id).thresholds = asdict(replace(QUICK, max_shadow_broken=1))
        session.commit()
    allowed = ActivityEnvironment().run(
        activities.shadow_release_suites, ShadowReleaseInput(release_id, 0, since.isoformat())
    )
    assert allowed.passed and "1 broken, 0 fixed" in allowed.reason
