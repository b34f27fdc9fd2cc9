"""Registered models described, renamed and deleted through the API, on the real database and object store: a rename
carries the versions, aliases and the tasks that register into it; a model an alias serves is not deleted; a deleted
model takes its versions and history with it and leaves its adapters with their tasks."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from activities.context import ActivityContext
from db.models import AliasMove, MLTask, ModelVersion, RegisteredModel, new_id
from testkit.api import api_client
from testkit.factories import make_task
from testkit.registry import add_version, point
from testkit.servers import free_port


@pytest.fixture
def offline_settings(settings):
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


async def test_describe_rename_and_delete_a_registered_model(offline_settings, tmp_path):
    settings = offline_settings
    ctx = ActivityContext.from_settings(settings)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    async with api_client(settings, "ada", "acme") as api:
        org_id = (await api.get("/api/v1/auth/me")).json()["org_id"]
        with ctx.sessions() as session:
            served, spare = (
                RegisteredModel(id=new_id(), org_id=org_id, name=name, base_model="smollm2-135m-instruct")
                for name in ("bot", "spare")
            )
            session.add_all([served, spare])
            session.commit()
        for model in (served, spare):
            add_version(ctx, model, 1, adapter)
        add_version(ctx, spare, 2, adapter)
        point(ctx, served, "production", 1)
        follower = make_task(ctx, org_id=org_id, register_as="bot")

        described = await api.patch("/api/v1/models/bot", json={"description": "the FAQ assistant"})
        assert described.status_code == 200 and described.json()["description"] == "the FAQ assistant"
        renamed = await api.patch("/api/v1/models/bot", json={"name": "faq-bot"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["aliases"] == {"production": 1} and renamed.json()["description"] == "the FAQ assistant"
        assert (await api.get("/api/v1/models/bot")).status_code == 404
        assert (await api.get("/api/v1/models/faq-bot/versions/1")).status_code == 200
        with ctx.sessions() as session:
            assert session.get_one(MLTask, follower.id).register_as == "faq-bot"

        for body, status, message in (
            ({"name": "spare"}, 409, "model spare already exists"),
            ({"name": "bad name!"}, 422, "name"),
            ({}, 422, "give a new name, a description, or both"),
            ({"name": None}, 422, "give a new name"),
        ):
            response = await api.patch("/api/v1/models/faq-bot", json=body)
            assert response.status_code == status and message in response.text, (body, response.text)

        refused = await api.delete("/api/v1/models/faq-bot")
        assert refused.status_code == 409 and "production" in refused.json()["detail"]
        assert (await api.delete("/api/v1/models/spare")).status_code == 204
        assert (await api.get("/api/v1/models/spare")).status_code == 404
        with ctx.sessions() as session:
            remaining = session.scalar(select(func.count()).select_from(ModelVersion))
            moves = session.scalar(select(func.count()).select_from(AliasMove))
        assert remaining == 1 and moves == 1  # faq-bot's version and its alias move are untouched
        # the adapters stay with their tasks
        assert len([k for k in ctx.store.list("models/") if k.endswith("adapter_config.json")]) == 3
    async with api_client(settings, "eve", "globex") as other:
        assert (await other.patch("/api/v1/models/faq-bot", json={"description": "x"})).status_code == 404
        assert (await other.delete("/api/v1/models/faq-bot")).status_code == 404
