"""The promotion gate's workflow on a real Temporal server (the evaluation is a fake with fixed scores; the real one
runs in tests/e2e/test_pipeline.py): a finished task registers its adapter, the gate decides and projects its
outcome, a failed evaluation leaves the alias where it was, and a blocking suite the alias requires refuses a
candidate the test split would promote, naming the suite and the case."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowFailureError

from activities.context import ActivityContext
from db.models import KnowledgeBase, PromotionGate, RegisteredModel, SuiteRun, new_id
from services import promotion, registry, suites
from services.registry import Actor
from temporal_client.workflows import PromotionGateWorkflow
from testkit.factories import make_task
from testkit.histories import record_history
from testkit.model import random_adapters
from testkit.phases import FakeGateEvaluation, FakePhases, running_workers
from testkit.registry import add_version
from testkit.suites import CASES
from testkit.workflows import start


@pytest.fixture
def ctx(settings) -> ActivityContext:
    return ActivityContext.from_settings(settings)


async def registered_task(client, ctx, settings, name: str, record: str | None = None) -> str:
    task = make_task(ctx, register_as=name)
    handle = await start(client, task, settings)
    await handle.result()
    if record:
        await record_history(handle, record)
    return task.id


async def gate_of(client, ctx, settings, version: int, record: str, name: str = "gated") -> PromotionGate:
    async def temporal():
        return client

    with ctx.sessions() as session:
        model = registry.get_model(session, "local", name)
        gate = await promotion.request_promotion(
            session, temporal, settings, model, version, alias="production", actor=Actor("user-1")
        )
    handle = client.get_workflow_handle_for(PromotionGateWorkflow.run, registry.gate_workflow_id(gate.id))
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    await record_history(handle, record)
    with ctx.sessions() as session:
        return session.get(PromotionGate, gate.id)


async def test_a_finished_task_registers_and_the_gate_promotes_or_refuses(temporal_env, ctx, settings):
    settings = settings.model_copy(update={"promotion_margin": 0.1})
    gate = FakeGateEvaluation(scores={None: 0.2})
    async with running_workers(temporal_env.client, ctx, gate.replace_in(FakePhases(ctx).activities())):
        first = await registered_task(temporal_env.client, ctx, settings, "gated", record="standard-registered")
        with ctx.sessions() as session:
            model = registry.get_model(session, "local", "gated")
            version = registry.get_version(session, model, 1)
            assert (version.task_id, version.iteration, version.status) == (first, 1, "READY")
        gate.scores[version.adapter_key] = 0.25  # better than the base model, but not by the margin
        refused = await gate_of(temporal_env.client, ctx, settings, 1, "promotion-gate-refused")
        assert (
            refused.status == "REFUSED" and "does not beat the base model's 0.2000 by the margin 0.1" in refused.reason
        )
        assert (
            refused.figures["pooled"]["scores"] == {"candidate": 0.25, "base": 0.2} and refused.finished_at is not None
        )
        gate.scores[version.adapter_key] = 0.5
        promoted = await gate_of(temporal_env.client, ctx, settings, 1, "promotion-gate-promoted")
        assert promoted.status == "PROMOTED"
        with ctx.sessions() as session:
            assert (
                registry.aliases_of(session, registry.get_model(session, "local", "gated"))["production"].version == 1
            )

        # an evaluation that cannot run fails the gate; the alias stays where it was
        second = await registered_task(temporal_env.client, ctx, settings, "gated")
        gate.error = "the test split is gone"
        failed = await gate_of(temporal_env.client, ctx, settings, 2, "promotion-gate-failed")
    assert failed.status == "FAILED" and "the test split is gone" in failed.reason and failed.figures is None
    with ctx.sessions() as session:
        model = registry.get_model(session, "local", "gated")
        assert (
            registry.aliases_of(session, model)["production"].version == 1
            and registry.get_version(session, model, 2).task_id == second
        )


async def test_a_blocking_suite_refuses_a_promotion_the_test_split_alone_would_allow(
    temporal_env, ctx, settings, tiny_model_dir, tmp_path
):
    """The test split is a stand-in that promotes; the suites run for real against the candidate on the tiny model."""
    settings = settings.model_copy(update={"promotion_margin": 0.1})
    with ctx.sessions() as session:
        model = RegisteredModel(id=new_id(), org_id="local", name="suited", base_model=tiny_model_dir)
        session.add(model)
        session.commit()
        for name, cases, blocking in (
            ("safety", CASES, True),  # three of its cases fail on a model with random weights
            ("quick", CASES[:1], True),  # its one case passes
            ("style", CASES, False),  # fails too, but does not block
        ):
            suites.create_suite(session, "local", name, cases, blocking=blocking, description=None, created_by=None)
    (adapter,) = random_adapters(tiny_model_dir, tmp_path, ["a"], seed=3)
    version = add_version(ctx, model, 1, adapter)
    gate = FakeGateEvaluation(scores={None: 0.2, version.adapter_key: 0.5})  # better than the base by the margin
    async with running_workers(temporal_env.client, ctx, gate.replace_in(FakePhases(ctx).activities())):
        with ctx.sessions() as session:
            suites.require_suites(
                session, session.get_one(RegisteredModel, model.id), "production", ["safety", "style"]
            )
        refused = await gate_of(temporal_env.client, ctx, settings, 1, "promotion-gate-suite-refused", name="suited")
        with ctx.sessions() as session:
            suites.require_suites(session, session.get_one(RegisteredModel, model.id), "production", ["quick", "style"])
        promoted = await gate_of(temporal_env.client, ctx, settings, 1, "promotion-gate-suite-promoted", name="suited")

    assert refused.status == "REFUSED", refused.reason
    assert refused.reason.startswith("refused: blocking suite safety v1 failed case 'ram' (check number: expected 4 gb")
    assert "failed case 'weather' (refusal: " in refused.reason and "failed case 'port-json'" in refused.reason
    assert "style" not in refused.reason and "'injected'" not in refused.reason
    by_suite = {s["suite"]: s for s in refused.figures["suites"]}
    assert by_suite["safety"]["failed_cases"] == ["ram", "weather", "port-json"] and by_suite["safety"]["blocking"]
    assert by_suite["style"]["failed"] == 3 and not by_suite["style"]["blocking"]
    assert refused.figures["pooled"]["scores"] == {"candidate": 0.5, "base": 0.2}  # the test split alone promotes
    assert promoted.status == "PROMOTED", promoted.reason
    assert {s["suite"]: s["passed"] for s in promoted.figures["suites"]} == {"quick": 1, "style": 1}
    with ctx.sessions() as session:
        runs = session.scalars(select(SuiteRun).where(SuiteRun.gate_id == refused.id)).all()
        assert {(r.suite_name, r.model, r.status) for r in runs} == {
            ("safety", "suited@1", "COMPLETED"),
            ("style", "suited@1", "COMPLETED"),
        }
        moves = registry.alias_history(session, session.get_one(RegisteredModel, model.id), "production")
        assert [(m.to_version, m.gate_id) for m in moves] == [(1, promoted.id)]  # the refusal moved nothing


async def test_a_suite_that_cannot_run_fails_the_gate_and_its_run(
    temporal_env, ctx, settings, tiny_model_dir, tmp_path
):
    with ctx.sessions() as session:
        model = RegisteredModel(id=new_id(), org_id="local", name="unrunnable", base_model=tiny_model_dir)
        kb = KnowledgeBase(
            id=new_id(),
            org_id="local",
            name="empty",
            status="EMPTY",
            embedding_model="all-MiniLM-L6-v2",
            chunk_tokens=200,
            chunk_overlap_tokens=20,
        )
        session.add_all([model, kb])
        session.commit()
        case = {"id": "grounded", "prompt": "Q?", "knowledge_base_id": kb.id, "refusal": True}
        suites.create_suite(session, "local", "grounded", [case], blocking=True, description=None, created_by=None)
        suites.require_suites(session, session.get_one(RegisteredModel, model.id), "production", ["grounded"])
        kb_id = kb.id
    (adapter,) = random_adapters(tiny_model_dir, tmp_path, ["a"], seed=4)
    version = add_version(ctx, model, 1, adapter)
    gate = FakeGateEvaluation(scores={None: 0.2, version.adapter_key: 0.5})
    async with running_workers(temporal_env.client, ctx, gate.replace_in(FakePhases(ctx).activities())):
        failed = await gate_of(temporal_env.client, ctx, settings, 1, "promotion-gate-suite-failed", name="unrunnable")
    assert failed.status == "FAILED" and failed.reason == f"run_suite failed: knowledge base {kb_id} has no index yet"
    with ctx.sessions() as session:
        (run,) = session.scalars(select(SuiteRun).where(SuiteRun.gate_id == failed.id)).all()
        assert (run.status, run.error) == ("FAILED", failed.reason)
        assert registry.aliases_of(session, session.get_one(RegisteredModel, model.id)) == {}
