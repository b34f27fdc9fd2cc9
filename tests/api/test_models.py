"""The model registry through the API, against the real Temporal server: a finished task registers its final adapter,
versions keep their lineage, and the promotion gate refuses a worse candidate (with its figures), promotes a better
one, and an alias rolls back. The phases and the gate's evaluation are fakes with fixed scores (orchestration only:
the real evaluation runs in tests/e2e/test_pipeline.py)."""

from __future__ import annotations

from sqlalchemy import select

from activities.context import ActivityContext
from core.access import Role
from db.models import AuditEntry
from testkit.api import api_client, client_for, upload, wait_for_gate, wait_until_done, with_temporal
from testkit.documents import write_dataset
from testkit.phases import FakeGateEvaluation, FakePhases, running_workers


def online(settings, temporal_env):
    return with_temporal(settings, temporal_env, promotion_margin=0.05)


async def finished_task(api, dataset_id: str, name: str, **fields) -> dict:
    created = await api.post("/api/v1/tasks/standard", json={"task_name": name, "dataset_id": dataset_id, **fields})
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]
    assert (await api.post(f"/api/v1/tasks/{task_id}/start")).status_code == 202
    task = await wait_until_done(api, task_id, timeout=60)
    assert task["status"] == "COMPLETED", task["error"]
    return task


async def promote(api, version: int, **body) -> tuple[int, dict]:
    response = await api.post(
        f"/api/v1/models/faq-bot/versions/{version}/promote", json={"alias": "production", **body}
    )
    return response.status_code, response.json() if response.status_code != 202 else await wait_for_gate(
        api, response.headers["location"]
    )


async def test_registry_versions_the_gate_and_rollback(temporal_env, settings, tmp_path):
    settings = online(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    gate = FakeGateEvaluation(scores={None: 0.20})  # adapter key -> per-question score; None is the base model
    async with (
        running_workers(temporal_env.client, ctx, gate.replace_in(FakePhases(ctx).activities())),
        api_client(settings) as api,
    ):
        dataset_id = (await upload(api, write_dataset(tmp_path / "faq.jsonl")))["dataset_id"]
        first = await finished_task(api, dataset_id, "first", register_as="faq-bot")

        # the final adapter is version 1, with its lineage
        version = (await api.get("/api/v1/models/faq-bot/versions/1")).json()
        assert (
            version["task_id"] == first["task_id"]
            and version["iteration"] == 1
            and version["adapter_key"] == first["latest_adapter_key"]
        )
        assert (
            version["dataset_id"] == f"{first['task_id']}-opt1"
            and version["splits_key"] == f"optimized/{first['task_id']}-opt1/splits.json"
        )
        assert version["serving_mode"] == "closed_book" and version["scores"] == {
            "closed_book": {"feedback": 0.3, "test": 0.3}
        }
        assert len(version["sha256"]) == 64 and version["size_bytes"] == len(b"weights") and version["aliases"] == []
        model = (await api.get("/api/v1/models/faq-bot")).json()
        assert (
            model["base_model"] == "smollm2-135m-instruct" and model["latest_version"] == 1 and model["aliases"] == {}
        )

        # registering the same iteration again is that version (200); under another name it is that model's version 1
        again = await api.post("/api/v1/models/faq-bot/versions", json={"task_id": first["task_id"]})
        assert again.status_code == 200 and again.json()["version"] == 1
        other = await api.post(
            "/api/v1/models/other-bot/versions",
            json={"task_id": first["task_id"], "iteration": 1, "description": "copy"},
        )
        assert (
            other.status_code == 201
            and other.json()["version"] == 1
            and other.headers["location"].endswith("/other-bot/versions/1")
        )
        assert (
            await api.post("/api/v1/models/faq-bot/versions", json={"task_id": first["task_id"], "iteration": 2})
        ).status_code == 409

        second = await finished_task(api, dataset_id, "second", register_as="faq-bot")
        third = await finished_task(api, dataset_id, "third", register_as="faq-bot")
        gate.scores.update(
            {first["latest_adapter_key"]: 0.50, second["latest_adapter_key"]: 0.30, third["latest_adapter_key"]: 0.70}
        )
        assert [v["version"] for v in (await api.get("/api/v1/models/faq-bot/versions")).json()["items"]] == [3, 2, 1]

        # nothing in production yet: v1 must beat the base model by the margin
        status, decision = await promote(api, 1)
        assert status == 202 and decision["status"] == "PROMOTED" and decision["current_version"] is None
        assert decision["figures"]["pooled"]["scores"] == {"candidate": 0.5, "base": 0.2}
        # v2 is worse than v1: refused, with the figures side by side; production stays at v1
        status, refused = await promote(api, 2)
        assert refused["status"] == "REFUSED" and refused["current_version"] == 1
        assert refused["figures"]["pooled"]["scores"] == {"candidate": 0.3, "current": 0.5, "base": 0.2}
        assert refused["figures"]["differences"]["candidate - current"]["mean"] == -0.2
        assert "does not beat the current version's 0.5000" in refused["reason"]
        # both locked test splits
        assert [s["name"] for s in refused["figures"]["sets"]] == [
            "v2's test split",
            "v1's test split",
        ]
        assert (await api.get("/api/v1/models/faq-bot")).json()["aliases"] == {"production": 1}
        # v3 beats both by the margin
        status, promoted = await promote(api, 3)
        assert (
            promoted["status"] == "PROMOTED"
            and "beats the current version (0.5000) and the base model (0.2000)" in promoted["reason"]
        )
        assert (
            await api.post("/api/v1/models/faq-bot/versions/3/promote", json={"alias": "production"})
        ).status_code == 409  # already there

        # the version behind an alias cannot be deleted; rollback moves it back
        assert (await api.delete("/api/v1/models/faq-bot/versions/3")).status_code == 409
        rolled = await api.post(
            "/api/v1/models/faq-bot/aliases/production/rollback", json={"reason": "v3 regressed in production"}
        )
        assert rolled.status_code == 200 and rolled.json()["version"] == 1
        aliases = (await api.get("/api/v1/models/faq-bot/aliases")).json()
        assert [(m["from_version"], m["to_version"], m["kind"]) for m in aliases[0]["history"]] == [
            (3, 1, "rollback"),
            (1, 3, "gate"),
            (None, 1, "gate"),
        ]
        assert (
            aliases[0]["history"][0]["reason"] == "v3 regressed in production"
            and aliases[0]["history"][1]["gate_id"] == promoted["gate_id"]
        )
        assert (await api.delete("/api/v1/models/faq-bot/versions/2")).status_code == 204
        assert (await api.get("/api/v1/models/faq-bot/versions/2")).status_code == 404
        gates = (await api.get("/api/v1/models/faq-bot/gates")).json()
        assert [g["status"] for g in gates["items"]] == ["PROMOTED", "REFUSED", "PROMOTED"]

        # forcing is for owners and admins, with a reason, and audited
        async with client_for(api._transport.app, settings, "mia", "test-org", Role.MEMBER) as member:
            forced = await member.post(
                "/api/v1/models/faq-bot/versions/3/promote",
                json={"alias": "staging", "force": True, "reason": "hotfix"},
            )
            assert forced.status_code == 403 and "models:force" in forced.json()["detail"]
            assert (
                await member.post("/api/v1/models/faq-bot/versions/3/promote", json={"alias": "BAD ALIAS"})
            ).status_code == 422
        no_reason = await api.post(
            "/api/v1/models/faq-bot/versions/3/promote", json={"alias": "staging", "force": True}
        )
        assert no_reason.status_code == 422 and "must say why" in no_reason.json()["detail"]
        forced = await api.post(
            "/api/v1/models/faq-bot/versions/3/promote",
            json={"alias": "staging", "force": True, "reason": "demo tomorrow"},
        )
        assert (
            forced.status_code == 202
            and forced.json()["status"] == "PROMOTED"
            and forced.json()["forced"]
            and forced.json()["figures"] is None
        )
        assert (await api.get("/api/v1/models/faq-bot")).json()["aliases"] == {"production": 1, "staging": 3}
    assert len(gate.calls) == 3  # the forced promotion evaluated nothing
    with ctx.sessions() as session:
        moves = session.scalars(
            select(AuditEntry.action).where(AuditEntry.action.like("alias %")).order_by(AuditEntry.id)
        ).all()
    assert moves == [
        "alias production of model faq-bot: v- -> v1 (gate)",
        "alias production of model faq-bot: v1 -> v3 (gate)",
        "alias production of model faq-bot: v3 -> v1 (rollback)",
        "alias staging of model faq-bot: v- -> v3 (forced)",
    ]


async def test_a_task_named_for_a_model_of_another_base_is_still_completed(
    temporal_env, settings, tmp_path, tiny_model_dir
):
    """The registration is refused (the name holds another base model's adapters), the task itself succeeded."""
    settings = online(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx, FakePhases(ctx).activities()), api_client(settings) as api:
        dataset_id = (await upload(api, write_dataset(tmp_path / "faq.jsonl")))["dataset_id"]
        await finished_task(api, dataset_id, "Base Line!")
        assert (await api.get("/api/v1/models/Base-Line")).json()["latest_version"] == 1  # the task name, made URL-safe
        tiny = await finished_task(api, dataset_id, "tiny", register_as="Base-Line", model_name=tiny_model_dir)
        assert (await api.get("/api/v1/models/Base-Line")).json()["latest_version"] == 1
        refused = await api.post("/api/v1/models/Base-Line/versions", json={"task_id": tiny["task_id"]})
        assert refused.status_code == 409 and "holds adapters of smollm2-135m-instruct" in refused.json()["detail"]
