"""Logins, token refresh, organizations, members, API keys and the audit log, inside one organization."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import accounts, api_keys
from auth.accounts import AccountConflict, AccountError
from auth.callers import Caller
from auth.tokens import ACCESS, REFRESH, InvalidToken, issue_token, read_token
from core.access import API_KEY_SCOPES, ROLE_SCOPES, Role, Scope, can_assign_role
from core.clock import utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from core.settings import Settings
from db.models import ApiKey, AuditEntry, Membership, Organization, User
from db.session import page
from schemas.api import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    Me,
    MemberCreate,
    MemberPublic,
    OrganizationMembership,
    OrganizationPublic,
    OrganizationUpdate,
    TokenPair,
)
from services.datasets import storage_bytes
from services.tasks import running_tasks


@contextmanager
def _account_change(session: Session) -> Iterator[None]:
    """Commit the change, or roll it back and answer 409 (a conflict) or 422 (anything else the accounts refuse)."""
    try:
        yield
    except AccountError as exc:
        session.rollback()
        raise (Conflict if isinstance(exc, AccountConflict) else Invalid)(str(exc)) from exc
    session.commit()


def token_pair(settings: Settings, user: User, org_id: str, role: Role) -> TokenPair:
    access, _ = issue_token(
        settings.secret_key,
        user.id,
        org_id,
        ACCESS,
        user.token_version,
        timedelta(minutes=settings.access_token_minutes),
    )
    refresh, _ = issue_token(
        settings.secret_key, user.id, org_id, REFRESH, user.token_version, timedelta(days=settings.refresh_token_days)
    )
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=settings.access_token_minutes * 60,
        org_id=org_id,
        role=role,
    )


def login(
    session: Session, settings: Settings, username: str, password: str, org: str | None
) -> tuple[TokenPair, Caller]:
    user = accounts.authenticate(session, username, password)
    if user is None:
        raise Unauthenticated("wrong username or password")
    memberships = accounts.memberships_of(session, user.id)
    if org is not None:
        memberships = [(m, o) for m, o in memberships if org in (o.id, o.name)]
    if not memberships:
        raise Unauthenticated(f"not a member of organization {org!r}" if org else "not a member of any organization")
    if len(memberships) > 1:
        names = ", ".join(o.name for _, o in memberships)
        raise Invalid(f"member of several organizations ({names}): say which one with `org`")
    member, organization = memberships[0]
    role = Role(member.role)
    return token_pair(settings, user, organization.id, role), Caller(user.id, organization.id, role, ROLE_SCOPES[role])


def refresh(session: Session, settings: Settings, refresh_token: str) -> TokenPair:
    try:
        claims = read_token(settings.secret_key, refresh_token, REFRESH)
    except InvalidToken as exc:
        raise Unauthenticated(str(exc)) from exc
    user = session.get(User, claims.user_id)
    if user is None or not user.is_active or claims.version != user.token_version:
        raise Unauthenticated("refresh token has been revoked")
    member = accounts.membership(session, claims.org_id, user.id)
    if member is None:
        raise Unauthenticated("no longer a member of the token's organization")
    return token_pair(settings, user, claims.org_id, Role(member.role))


def switch_org(session: Session, settings: Settings, caller: Caller, org_id: str) -> tuple[TokenPair, Caller]:
    """A new token pair for another organization the signed-in user belongs to, with their role there (no password:
    the session already proves who they are, and login with `org` would give the same pair)."""
    if caller.api_key_id is not None:  # a key belongs to one organization
        raise Forbidden("API keys cannot switch organizations: a key acts only in the organization it was created in")
    member = accounts.membership(session, org_id, caller.user_id)
    if member is None:
        raise NotFound(f"organization {org_id} not found")
    role = Role(member.role)
    return token_pair(settings, session.get_one(User, caller.user_id), org_id, role), Caller(
        caller.user_id, org_id, role, ROLE_SCOPES[role]
    )


def logout(session: Session, caller: Caller) -> None:
    """Revoke every access and refresh token of the caller (their API keys stay valid until revoked)."""
    if caller.api_key_id is not None:  # a key acts for its creator: it must not end the creator's sessions
        raise Forbidden("API keys cannot log out: revoke the key with DELETE /api/v1/api-keys/{key_id}")
    user = session.get_one(User, caller.user_id)
    user.token_version += 1
    session.commit()


def me(session: Session, caller: Caller) -> Me:
    user = session.get_one(User, caller.user_id)
    memberships = accounts.memberships_of(session, user.id)
    current = next(o for m, o in memberships if o.id == caller.org_id)
    return Me(
        user_id=user.id,
        username=user.username,
        org_id=caller.org_id,
        org_name=current.name,
        role=caller.role,
        scopes=sorted(caller.scopes),
        api_key_id=caller.api_key_id,
        organizations=[OrganizationMembership(org_id=o.id, org_name=o.name, role=Role(m.role)) for m, o in memberships],
    )


# --- organizations and members ---------------------------------------------------------


def own_org(session: Session, caller: Caller, org_id: str) -> Organization:
    """The caller's current organization; any other id is not found."""
    org = session.get(Organization, org_id) if org_id == caller.org_id else None
    if org is None:
        raise NotFound(f"organization {org_id} not found")
    return org


def org_public(session: Session, settings: Settings, org: Organization) -> OrganizationPublic:
    return OrganizationPublic(
        org_id=org.id,
        name=org.name,
        created_at=org.created_at,
        running_tasks=running_tasks(session, org.id),
        max_running_tasks=settings.max_running_tasks_per_org,
        storage_bytes=storage_bytes(session, org.id),
        max_storage_bytes=settings.max_storage_bytes_per_org,
        qa_retention_days=org.qa_retention_days,
        event_retention_days=org.event_retention_days,
    )


def create_org(session: Session, caller: Caller, name: str) -> Organization:
    """A new organization with the caller as its owner (people, not programs, create organizations)."""
    if caller.api_key_id is not None:
        raise Forbidden("API keys cannot create organizations")
    with _account_change(session):
        org = accounts.create_org(session, name)
        accounts.add_member(session, org, session.get_one(User, caller.user_id), Role.OWNER)
    return org


def update_org(session: Session, caller: Caller, org_id: str, body: OrganizationUpdate) -> Organization:
    """Rename the organization and/or set its retention limits (only the fields the body gives)."""
    org = own_org(session, caller, org_id)
    given = body.model_fields_set
    if not given:
        raise Invalid("nothing to change: give name, qa_retention_days or event_retention_days")
    if "name" in given and body.name is None:
        raise Invalid("name: an organization keeps a name")
    with _account_change(session):
        if body.name is not None:
            accounts.check_org_name(body.name)
            if body.name != org.name and accounts.find_org(session, body.name) is not None:
                raise AccountConflict(f"organization {body.name!r} already exists")
            org.name = body.name
        if "qa_retention_days" in given:
            org.qa_retention_days = body.qa_retention_days
        if "event_retention_days" in given:
            org.event_retention_days = body.event_retention_days
    return org


def list_members(session: Session, caller: Caller, org_id: str) -> list[MemberPublic]:
    own_org(session, caller, org_id)
    rows = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id)
        .order_by(User.username)
    )
    return [member_public(m, u) for m, u in rows]


def member_public(member: Membership, user: User) -> MemberPublic:
    return MemberPublic(user_id=user.id, username=user.username, role=Role(member.role), created_at=member.created_at)


def add_member(session: Session, caller: Caller, org_id: str, body: MemberCreate) -> MemberPublic:
    org = own_org(session, caller, org_id)
    if not can_assign_role(caller.role, None, body.role):
        raise Forbidden(f"a {caller.role.value} cannot add an {body.role.value}")
    with _account_change(session):
        user = accounts.find_user(session, body.username)
        if user is None:
            if body.password is None:
                raise AccountError(f"user {body.username!r} does not exist: give a `password` to create the account")
            user = accounts.create_user(session, body.username, body.password)
        elif body.password is not None:
            raise AccountError(f"user {body.username!r} already exists: leave out `password` to add them")
        member = accounts.add_member(session, org, user, body.role)
    return member_public(member, user)


def _member(session: Session, caller: Caller, org_id: str, user_id: str) -> tuple[Membership, User]:
    own_org(session, caller, org_id)
    member = accounts.membership(session, org_id, user_id)
    if member is None:
        raise NotFound(f"member {user_id} not found")
    return member, session.get_one(User, user_id)


def change_role(session: Session, caller: Caller, org_id: str, user_id: str, role: Role) -> MemberPublic:
    member, user = _member(session, caller, org_id, user_id)
    if not can_assign_role(caller.role, Role(member.role), role):
        raise Forbidden(f"a {caller.role.value} cannot change a {member.role} into a {role.value}")
    with _account_change(session):
        accounts.set_role(session, member, role)
    return member_public(member, user)


def remove_member(session: Session, caller: Caller, org_id: str, user_id: str) -> None:
    member, _ = _member(session, caller, org_id, user_id)
    if not can_assign_role(caller.role, Role(member.role), None):
        raise Forbidden(f"a {caller.role.value} cannot remove a {member.role}")
    with _account_change(session):
        accounts.remove_member(session, member)


# --- API keys --------------------------------------------------------------------------


def key_public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        key_id=key.id,
        name=key.name,
        prefix=f"wlk_{key.prefix}",
        scopes=[Scope(s) for s in key.scopes],
        created_by=key.created_by,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


def create_api_key(session: Session, caller: Caller, body: ApiKeyCreate) -> ApiKeyCreated:
    if caller.api_key_id is not None:
        raise Forbidden("API keys cannot create API keys")
    not_grantable = sorted(s.value for s in set(body.scopes) - API_KEY_SCOPES)
    if not_grantable:
        raise Invalid(
            f"scopes: {', '.join(not_grantable)} cannot be given to an API key; "
            f"allowed: {', '.join(sorted(API_KEY_SCOPES))}"
        )
    secret, prefix, secret_hash = api_keys.new_api_key()
    expires_at = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    key = ApiKey(
        org_id=caller.org_id,
        created_by=caller.user_id,
        name=body.name,
        prefix=prefix,
        secret_hash=secret_hash,
        scopes=sorted({s.value for s in body.scopes}),
        expires_at=expires_at,
    )
    session.add(key)
    session.commit()
    return ApiKeyCreated(**key_public(key).model_dump(), secret=secret)


def list_api_keys(session: Session, caller: Caller) -> list[ApiKeyPublic]:
    keys = session.scalars(
        select(ApiKey).where(ApiKey.org_id == caller.org_id).order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return [key_public(k) for k in keys]


def revoke_api_key(session: Session, caller: Caller, key_id: str) -> ApiKeyPublic:
    key = session.get(ApiKey, key_id)
    if key is None or key.org_id != caller.org_id:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key_public(key)


# --- audit -----------------------------------------------------------------------------


def list_audit(
    session: Session, caller: Caller, limit: int, offset: int, action: str | None
) -> tuple[list[AuditEntry], int]:
    query = select(AuditEntry).where(AuditEntry.org_id == caller.org_id)
    if action:
        query = query.where(AuditEntry.action.contains(action))
    return page(session, query, AuditEntry.id.desc(), limit=limit, offset=offset)
