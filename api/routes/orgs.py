from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import SessionDep, SettingsDep
from api.security import AnyCaller, MembersRead, MembersWrite, OrgManage
from schemas.api import (
    JudgePublic,
    JudgeSet,
    MemberCreate,
    MemberPublic,
    MemberUpdate,
    OrganizationCreate,
    OrganizationPublic,
    OrganizationUpdate,
    RetentionPublic,
    RetentionRunPublic,
)
from services import identity as service
from services import judges, retention

router = APIRouter(prefix="/api/v1/orgs", tags=["organizations"])


@router.post("", status_code=201, response_model=OrganizationPublic)
def create_org(
    caller: AnyCaller, session: SessionDep, settings: SettingsDep, body: OrganizationCreate, response: Response
) -> OrganizationPublic:
    """A new organization owned by the caller; log in with `org` to act in it."""
    org = service.create_org(session, caller, body.name)
    response.headers["Location"] = f"{router.prefix}/{org.id}"
    return service.org_public(session, settings, org)


@router.get("/{org_id}", response_model=OrganizationPublic)
def get_org(caller: MembersRead, session: SessionDep, settings: SettingsDep, org_id: str) -> OrganizationPublic:
    """The organization with its quotas and current use."""
    return service.org_public(session, settings, service.own_org(session, caller, org_id))


@router.patch("/{org_id}", response_model=OrganizationPublic)
def update_org(
    caller: OrgManage, session: SessionDep, settings: SettingsDep, org_id: str, body: OrganizationUpdate
) -> OrganizationPublic:
    """Rename the organization, or set how long it keeps its QA history and finished tasks' events."""
    return service.org_public(session, settings, service.update_org(session, caller, org_id, body))


@router.get("/{org_id}/retention", response_model=RetentionPublic)
def get_retention(caller: MembersRead, session: SessionDep, settings: SettingsDep, org_id: str) -> RetentionPublic:
    """The organization's retention limits and what the latest retention passes deleted."""
    org = service.own_org(session, caller, org_id)
    runs = retention.recent_runs(session, org.id)
    return RetentionPublic(
        org_id=org.id,
        qa_retention_days=org.qa_retention_days,
        event_retention_days=org.event_retention_days,
        interval_hours=settings.retention_interval_hours,
        runs=[RetentionRunPublic.model_validate(r, from_attributes=True) for r in runs],
    )


@router.get("/{org_id}/judge", response_model=JudgePublic)
def get_judge(caller: MembersRead, session: SessionDep, org_id: str) -> JudgePublic:
    """The organization's judge for suites' `judge` assertions (its API key is never shown)."""
    return judges.judge_public(service.own_org(session, caller, org_id))


@router.put("/{org_id}/judge", response_model=JudgePublic)
def set_judge(
    caller: OrgManage, session: SessionDep, settings: SettingsDep, org_id: str, body: JudgeSet
) -> JudgePublic:
    """Point the organization's judge at an OpenAI-compatible endpoint on a host the server allows
    (`WLOPS_JUDGE_ALLOWED_HOSTS`); a `judge` assertion asks it whether an answer meets the case's rubric."""
    org = service.own_org(session, caller, org_id)
    return judges.judge_public(judges.set_judge(session, settings, org, body))


@router.delete("/{org_id}/judge", status_code=204)
def clear_judge(caller: OrgManage, session: SessionDep, org_id: str) -> None:
    """Remove the organization's judge: `judge` assertions then fail, saying none is configured."""
    judges.clear_judge(session, service.own_org(session, caller, org_id))


@router.get("/{org_id}/members", response_model=list[MemberPublic])
def list_members(caller: MembersRead, session: SessionDep, org_id: str) -> list[MemberPublic]:
    return service.list_members(session, caller, org_id)


@router.post("/{org_id}/members", status_code=201, response_model=MemberPublic)
def add_member(
    caller: MembersWrite, session: SessionDep, org_id: str, body: MemberCreate, response: Response
) -> MemberPublic:
    """Add an existing user, or create the account when a password is given."""
    member = service.add_member(session, caller, org_id, body)
    response.headers["Location"] = f"{router.prefix}/{org_id}/members/{member.user_id}"
    return member


@router.patch("/{org_id}/members/{user_id}", response_model=MemberPublic)
def change_role(
    caller: MembersWrite, session: SessionDep, org_id: str, user_id: str, body: MemberUpdate
) -> MemberPublic:
    return service.change_role(session, caller, org_id, user_id, body.role)


@router.delete("/{org_id}/members/{user_id}", status_code=204)
def remove_member(caller: MembersWrite, session: SessionDep, org_id: str, user_id: str) -> None:
    service.remove_member(session, caller, org_id, user_id)
