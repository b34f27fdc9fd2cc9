from __future__ import annotations

import os
import tempfile
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from api.deps import Offset, SessionDep, SettingsDep, StoreDep, TemporalDep
from api.security import ModelsRead, ModelsRegister, ModelsWrite
from auth.callers import Caller
from db.models import AliasMove, ModelVersion, PromotionGate, RegisteredModel
from schemas.api import (
    MODEL_NAME,
    AliasMovePublic,
    AliasPublic,
    AliasSuites,
    AliasSuitesRequest,
    GateList,
    GatePublic,
    ModelVersionList,
    ModelVersionPublic,
    PromoteRequest,
    RegisteredModelList,
    RegisteredModelPublic,
    RegisteredModelUpdate,
    RegisterVersionRequest,
    RollbackRequest,
)
from services import promotion, suites
from services import registry as service

router = APIRouter(prefix="/api/v1/models", tags=["models"])
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="The version number (1, 2, ...).")]
Limit = Annotated[int, Query(ge=1, le=200)]


def actor(caller: Caller) -> service.Actor:
    return service.Actor(caller.user_id, caller.api_key_id, caller.scopes)


def model_public(session, model: RegisteredModel) -> RegisteredModelPublic:
    aliases = {alias: version.version for alias, version in service.aliases_of(session, model).items()}
    return RegisteredModelPublic(
        latest_version=service.latest_version(session, model),
        aliases=aliases,
        **{k: getattr(model, k) for k in RegisteredModelPublic.model_fields if k not in ("latest_version", "aliases")},
    )


def version_public(session, model: RegisteredModel, version: ModelVersion) -> ModelVersionPublic:
    aliases = [alias for alias, target in service.aliases_of(session, model).items() if target.id == version.id]
    return ModelVersionPublic(
        model_name=model.name,
        aliases=aliases,
        **{k: getattr(version, k) for k in ModelVersionPublic.model_fields if k not in ("model_name", "aliases")},
    )


def gate_public(model: RegisteredModel, gate: PromotionGate) -> GatePublic:
    return GatePublic(
        gate_id=gate.id,
        model_name=model.name,
        **{k: getattr(gate, k) for k in GatePublic.model_fields if k not in ("gate_id", "model_name")},
    )


def move_public(move: AliasMove) -> AliasMovePublic:
    return AliasMovePublic.model_validate(move, from_attributes=True)


@router.get("", response_model=RegisteredModelList)
def list_models(caller: ModelsRead, session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> RegisteredModelList:
    rows, total = service.list_models(session, caller.org_id, limit, offset)
    return RegisteredModelList(items=[model_public(session, m) for m in rows], total=total, limit=limit, offset=offset)


@router.get("/{model_name}", response_model=RegisteredModelPublic)
def get_model(caller: ModelsRead, session: SessionDep, model_name: str) -> RegisteredModelPublic:
    return model_public(session, service.get_model(session, caller.org_id, model_name))


@router.patch("/{model_name}", response_model=RegisteredModelPublic)
def update_model(
    caller: ModelsWrite, session: SessionDep, model_name: str, body: RegisteredModelUpdate
) -> RegisteredModelPublic:
    """Rename the model (serving and the registry know it by the new name at once; answers already given keep the
    name they were given under) or describe it."""
    model = service.get_model(session, caller.org_id, model_name)
    updated = service.update_model(
        session, model, name=body.name, description=body.description, fields=body.model_fields_set
    )
    return model_public(session, updated)


@router.delete("/{model_name}", status_code=204)
def delete_model(caller: ModelsWrite, session: SessionDep, model_name: str) -> None:
    """Delete the model with its versions (their adapters stay with their tasks); 409 while an alias points at one."""
    service.delete_model(session, service.get_model(session, caller.org_id, model_name))


@router.post(
    "/{model_name}/versions",
    status_code=201,
    response_model=ModelVersionPublic,
    responses={200: {"model": ModelVersionPublic, "description": "That iteration already is a version of this model"}},
)
def register_version(
    caller: ModelsRegister,
    session: SessionDep,
    store: StoreDep,
    model_name: str,
    body: RegisterVersionRequest,
    response: Response,
) -> ModelVersionPublic:
    """A finished iteration of a task (default: its last) as the next version of this model; the model is made on
    first use."""
    version, created = service.register_version(
        session,
        store,
        org_id=caller.org_id,
        model_name=model_name,
        task_id=body.task_id,
        iteration=body.iteration,
        created_by=caller.user_id,
        description=body.description,
    )
    model = service.get_model(session, caller.org_id, model_name)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"{router.prefix}/{model_name}/versions/{version.version}"
    return version_public(session, model, version)


@router.get("/{model_name}/versions", response_model=ModelVersionList)
def list_versions(
    caller: ModelsRead, session: SessionDep, model_name: str, limit: Limit = 50, offset: Offset = 0
) -> ModelVersionList:
    model = service.get_model(session, caller.org_id, model_name)
    rows, total = service.list_versions(session, model, limit, offset)
    return ModelVersionList(
        items=[version_public(session, model, v) for v in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{model_name}/versions/{version}", response_model=ModelVersionPublic)
def get_version(caller: ModelsRead, session: SessionDep, model_name: str, version: Version) -> ModelVersionPublic:
    model = service.get_model(session, caller.org_id, model_name)
    return version_public(session, model, service.get_version(session, model, version))


@router.delete("/{model_name}/versions/{version}", status_code=204)
def delete_version(caller: ModelsWrite, session: SessionDep, model_name: str, version: Version) -> None:
    """Forget a version (its adapter stays with its task); 409 while an alias points at it."""
    service.delete_version(session, service.get_model(session, caller.org_id, model_name), version)


@router.get(
    "/{model_name}/versions/{version}/adapter",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/x-tar": {}},
            "description": "The adapter folder as a tar (load it with PeftModel.from_pretrained)",
        }
    },
)
async def download_adapter(
    caller: ModelsRead, session: SessionDep, store: StoreDep, model_name: str, version: Version
) -> FileResponse:
    model = service.get_model(session, caller.org_id, model_name)
    row = service.get_version(session, model, version)
    with tempfile.NamedTemporaryFile(suffix=".tar", delete=False) as handle:  # kept until the response is sent
        try:
            await run_in_threadpool(service.write_adapter_tar, store, row, handle)
        except BaseException:
            os.unlink(handle.name)
            raise
    return FileResponse(
        handle.name,
        media_type="application/x-tar",
        filename=f"{model_name}-v{version}-adapter.tar",
        background=BackgroundTask(os.unlink, handle.name),
    )


@router.get("/{model_name}/aliases", response_model=list[AliasPublic])
def list_aliases(caller: ModelsRead, session: SessionDep, model_name: str) -> list[AliasPublic]:
    """Each alias, the version it points at, and the history of its moves (who, when, from, to, why)."""
    model = service.get_model(session, caller.org_id, model_name)
    history = service.alias_history(session, model)
    return [
        AliasPublic(
            alias=alias,
            version=version.version,
            updated_at=_moved_at(history, alias),
            history=[move_public(m) for m in history if m.alias == alias],
        )
        for alias, version in service.aliases_of(session, model).items()
    ]


def _moved_at(history: list[AliasMove], alias: str):
    return next(m.at for m in history if m.alias == alias)


@router.post("/{model_name}/versions/{version}/promote", status_code=202, response_model=GatePublic)
async def promote_version(
    caller: ModelsWrite,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    model_name: str,
    version: Version,
    body: PromoteRequest,
    response: Response,
) -> GatePublic:
    """Ask the promotion gate to point `alias` at this version: 202 with the gate, whose outcome
    `GET .../gates/{gate_id}` shows. With `force` (owners and admins, with a reason) the alias moves at once,
    audited."""
    model = service.get_model(session, caller.org_id, model_name)
    gate = await promotion.request_promotion(
        session,
        temporal,
        settings,
        model,
        version,
        alias=body.alias,
        actor=actor(caller),
        force=body.force,
        reason=body.reason,
    )
    response.headers["Location"] = f"{router.prefix}/{model_name}/gates/{gate.id}"
    return gate_public(model, gate)


@router.post("/{model_name}/aliases/{alias}/rollback", response_model=AliasPublic)
def rollback_alias(
    caller: ModelsWrite, session: SessionDep, model_name: str, alias: str, body: RollbackRequest | None = None
) -> AliasPublic:
    """Move the alias back to the version it pointed at before its last move."""
    model = service.get_model(session, caller.org_id, model_name)
    move = service.rollback(session, model, alias, actor(caller), body.reason if body else None)
    history = service.alias_history(session, model, alias)
    return AliasPublic(
        alias=alias, version=move.to_version, updated_at=move.at, history=[move_public(m) for m in history]
    )


@router.put("/{model_name}/aliases/{alias}/suites", response_model=AliasSuites)
def require_suites(
    caller: ModelsWrite,
    session: SessionDep,
    model_name: str,
    alias: Annotated[str, Path(pattern=MODEL_NAME, max_length=64)],
    body: AliasSuitesRequest,
) -> AliasSuites:
    """The suites a promotion to `alias` runs against the candidate (their latest version): a failing case of a
    blocking one refuses the promotion, naming the suite and the case. An empty list requires none."""
    model = service.get_model(session, caller.org_id, model_name)
    return AliasSuites(
        model_name=model.name, alias=alias, suites=suites.require_suites(session, model, alias, body.suites)
    )


@router.get("/{model_name}/gates", response_model=GateList)
def list_gates(
    caller: ModelsRead, session: SessionDep, model_name: str, limit: Limit = 50, offset: Offset = 0
) -> GateList:
    model = service.get_model(session, caller.org_id, model_name)
    rows, total = service.list_gates(session, model, limit, offset)
    return GateList(items=[gate_public(model, g) for g in rows], total=total, limit=limit, offset=offset)


@router.get("/{model_name}/gates/{gate_id}", response_model=GatePublic)
def get_gate(caller: ModelsRead, session: SessionDep, model_name: str, gate_id: str) -> GatePublic:
    """The gate's outcome: EVALUATING, then PROMOTED or REFUSED with the figures side by side and the reason (or
    FAILED)."""
    model = service.get_model(session, caller.org_id, model_name)
    return gate_public(model, service.get_gate(session, model, gate_id))
