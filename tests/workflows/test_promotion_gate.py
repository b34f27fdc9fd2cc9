"""The promotion gate's workflow on a real Temporal server (the evaluation is a fake with fixed scores; the real one
runs in tests/e2e/test_pipeline.py): a finished task registers its adapter, the gate decides and projects its
outcome, and a failed evaluation leaves the alias where it was."""

from __future__ import annotations

import contextlib

import pytest
from temporalio.client import WorkflowFailureError

from activities.context import ActivityContext
from db.models import PromotionGate
from services import registry
from services.registry import Actor
from temporal_client.workflows import PromotionGateWorkflow
from testkit.factories import make_task
from testkit.histories import record_history
from testkit.phases import FakeGateEvaluation, FakePhases, running_workers
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
        gate = await registry.request_promotion(
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
