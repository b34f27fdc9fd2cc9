"""Registered versions for the serving tests: an adapter stored where a task would have left it, and alias moves."""

from __future__ import annotations

from activities.context import ActivityContext
from db.models import ModelVersion, RegisteredModel, new_id
from services import registry
from storage.checksums import stored_digest
from storage.object_store import put_dir
from testkit.factories import version_row


def new_model(ctx: ActivityContext, org_id: str, name: str, base_model: str) -> RegisteredModel:
    """A registered model with no versions yet."""
    model = RegisteredModel(id=new_id(), org_id=org_id, name=name, base_model=base_model)
    with ctx.sessions() as session:
        session.add(model)
        session.commit()
    return model


def add_version(ctx: ActivityContext, model: RegisteredModel, number: int, adapter_dir, **fields) -> ModelVersion:
    """A version whose adapter is stored where a task would have left it (the task itself is not needed here), with
    its checksum; `fields` set more of its row (`splits_key`, ...)."""
    task_id = new_id()
    adapter_key = f"models/{task_id}/iter-1/adapter/"
    put_dir(ctx.store, adapter_key, adapter_dir)
    sha256, size = stored_digest(ctx.store, adapter_key)
    with ctx.sessions() as session:
        version = version_row(
            model_id=model.id,
            org_id=model.org_id,
            number=number,
            task_id=task_id,
            adapter_key=adapter_key,
            sha256=sha256,
            size_bytes=size,
            **fields,
        )
        session.add(version)
        session.commit()
        return version


def point(ctx: ActivityContext, model: RegisteredModel, alias: str, number: int) -> None:
    with ctx.sessions() as session:
        model = session.get(RegisteredModel, model.id)
        registry.move_alias(
            session,
            model,
            alias,
            registry.get_version(session, model, number),
            kind="forced",
            reason="test",
            actor=registry.Actor(),
        )
        session.commit()
