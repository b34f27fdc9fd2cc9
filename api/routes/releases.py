"""Releases of a model's alias: start one (its workflow then moves the candidate's weight step by step), read them with
every decision and its figures, and control a running one: promote (skip to the end; models:force), pause, resume,
abort. Thin: each route calls `services.releases`; the workflow's validators refuse a control that the release's
state does not allow (409)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import Offset, SessionDep, SettingsDep, TemporalDep
from api.security import ModelsForce, ModelsRead, ModelsWrite
from auth.callers import Caller
from ml.release import Thresholds
from schemas.api import ReleaseControlRequest, ReleaseCreate, ReleaseList, ReleasePublic
from services import registry, releases
from services.releases import release_public

router = APIRouter(prefix="/api/v1/models", tags=["releases"])
Limit = Annotated[int, Query(ge=1, le=200)]
ReleaseId = Annotated[str, Path(min_length=1, max_length=64)]


def actor(caller: Caller) -> registry.Actor:
    return registry.Actor(caller.user_id, caller.api_key_id, caller.scopes)


@router.post("/{model_name}/releases", status_code=201, response_model=ReleasePublic)
async def start_release(
    caller: ModelsWrite,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    model_name: str,
    body: ReleaseCreate,
    response: Response,
) -> ReleasePublic:
    """Release `alias` to `candidate_version` in steps: serving sends each step's share of the alias's traffic to the
    candidate (sticky per conversation), each step is analysed, a failing candidate is rolled back, too little traffic
    pauses, and the last step moves the alias. The blocking suites the alias requires run against the candidate first:
    a failing case rolls the release back before any traffic. 409 while another release is active on the alias."""
    model = registry.get_model(session, caller.org_id, model_name)
    thresholds = Thresholds(**body.model_dump(exclude={"candidate_version", "alias", "steps"}))
    release = await releases.start_release(
        session,
        temporal,
        model,
        body.candidate_version,
        alias=body.alias,
        steps=body.steps,
        thresholds=thresholds,
        actor=actor(caller),
        settings=settings,
    )
    response.headers["Location"] = f"{router.prefix}/{model_name}/releases/{release.id}"
    return release_public(session, model, release)


@router.get("/{model_name}/releases", response_model=ReleaseList)
def list_releases(
    caller: ModelsRead, session: SessionDep, model_name: str, limit: Limit = 50, offset: Offset = 0
) -> ReleaseList:
    model = registry.get_model(session, caller.org_id, model_name)
    rows, total = releases.list_releases(session, model, limit, offset)
    return ReleaseList(items=[release_public(session, model, r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{model_name}/releases/{release_id}", response_model=ReleasePublic)
def get_release(caller: ModelsRead, session: SessionDep, model_name: str, release_id: ReleaseId) -> ReleasePublic:
    """The release with every decision and its figures."""
    model = registry.get_model(session, caller.org_id, model_name)
    return release_public(session, model, releases.get_release(session, model, release_id))


async def _control(
    caller: Caller,
    session,
    temporal,
    model_name: str,
    release_id: str,
    action: str,
    body: ReleaseControlRequest | None,
) -> ReleasePublic:
    model = registry.get_model(session, caller.org_id, model_name)
    release = releases.get_release(session, model, release_id)
    await releases.control(session, temporal, release, action, actor(caller), body.reason if body else None)
    return release_public(session, model, releases.get_release(session, model, release_id))


@router.post("/{model_name}/releases/{release_id}/promote", response_model=ReleasePublic)
async def promote_release(
    caller: ModelsForce,
    session: SessionDep,
    temporal: TemporalDep,
    model_name: str,
    release_id: ReleaseId,
    body: ReleaseControlRequest | None = None,
) -> ReleasePublic:
    """Skip the remaining steps and analyses and move the alias now (owners and admins; audited)."""
    return await _control(caller, session, temporal, model_name, release_id, "promote", body)


@router.post("/{model_name}/releases/{release_id}/pause", response_model=ReleasePublic)
async def pause_release(
    caller: ModelsWrite,
    session: SessionDep,
    temporal: TemporalDep,
    model_name: str,
    release_id: ReleaseId,
    body: ReleaseControlRequest | None = None,
) -> ReleasePublic:
    """Pause: the alias serves its current version only until resumed."""
    return await _control(caller, session, temporal, model_name, release_id, "pause", body)


@router.post("/{model_name}/releases/{release_id}/resume", response_model=ReleasePublic)
async def resume_release(
    caller: ModelsWrite,
    session: SessionDep,
    temporal: TemporalDep,
    model_name: str,
    release_id: ReleaseId,
    body: ReleaseControlRequest | None = None,
) -> ReleasePublic:
    """Resume a paused release: its step starts again (bake time, requests) at the same weight."""
    return await _control(caller, session, temporal, model_name, release_id, "resume", body)


@router.post("/{model_name}/releases/{release_id}/abort", response_model=ReleasePublic)
async def abort_release(
    caller: ModelsWrite,
    session: SessionDep,
    temporal: TemporalDep,
    model_name: str,
    release_id: ReleaseId,
    body: ReleaseControlRequest | None = None,
) -> ReleasePublic:
    """Stop the release: candidate weight 0, the alias unchanged."""
    return await _control(caller, session, temporal, model_name, release_id, "abort", body)
