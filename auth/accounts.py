"""Organizations, users and memberships: the operations the CLI and the API share."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from auth.passwords import hash_password, verify_password
from core.access import Role
from core.clock import utcnow
from db.models import ApiKey, Membership, Organization, User

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")
ORG_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")


class AccountError(ValueError):
    """A request about accounts that cannot be done as asked (the message says why)."""


class AccountConflict(AccountError):
    """The name is taken, or the change would leave an organization without an owner."""


@dataclass(frozen=True)
class UserSetup:
    user: User
    org: Organization
    role: Role
    created_user: bool
    created_org: bool


def check_username(username: str) -> str:
    if not USERNAME_PATTERN.match(username):
        raise AccountError(
            "username must be 2-64 characters: letters, digits, '_', '.', '-' (starting with a letter or digit)"
        )
    return username


def check_org_name(name: str) -> str:
    if not ORG_NAME_PATTERN.match(name):
        raise AccountError("organization name must be 1-100 characters: letters, digits, spaces, '_', '.', '-'")
    return name


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def find_org(session: Session, name: str) -> Organization | None:
    return session.scalar(select(Organization).where(Organization.name == name))


def create_org(session: Session, name: str) -> Organization:
    if find_org(session, check_org_name(name)) is not None:
        raise AccountConflict(f"organization {name!r} already exists")
    org = Organization(name=name)
    session.add(org)
    session.flush()
    return org


def create_user(session: Session, username: str, password: str) -> User:
    if find_user(session, check_username(username)) is not None:
        raise AccountConflict(f"user {username!r} already exists")
    try:
        user = User(username=username, password_hash=hash_password(password))
    except ValueError as exc:
        raise AccountError(str(exc)) from exc
    session.add(user)
    session.flush()
    return user


def membership(session: Session, org_id: str, user_id: str) -> Membership | None:
    return session.scalar(select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id))


def add_member(session: Session, org: Organization, user: User, role: Role) -> Membership:
    if membership(session, org.id, user.id) is not None:
        raise AccountConflict(f"user {user.username!r} is already a member of {org.name!r}")
    member = Membership(org_id=org.id, user_id=user.id, role=role.value)
    session.add(member)
    session.flush()
    return member


def owners_left(session: Session, org_id: str, without_user: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.org_id == org_id, Membership.role == Role.OWNER.value, Membership.user_id != without_user)
        )
        or 0
    )


def set_role(session: Session, member: Membership, role: Role) -> Membership:
    if (
        member.role == Role.OWNER.value
        and role != Role.OWNER
        and owners_left(session, member.org_id, member.user_id) == 0
    ):
        raise AccountConflict("an organization needs at least one owner: make someone else owner first")
    member.role = role.value
    session.flush()
    return member


def remove_member(session: Session, member: Membership) -> None:
    """Remove a member, end their sessions and revoke the API keys they made in this organization (tokens do
    not name a membership: neither a token nor a key of the old membership may come back if the user is
    added again)."""
    if member.role == Role.OWNER.value and owners_left(session, member.org_id, member.user_id) == 0:
        raise AccountConflict("an organization needs at least one owner: make someone else owner first")
    session.get_one(User, member.user_id).token_version += 1
    session.execute(
        update(ApiKey)
        .where(ApiKey.org_id == member.org_id, ApiKey.created_by == member.user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    session.delete(member)
    session.flush()


def ensure_user(session: Session, username: str, password: str, org_name: str, role: Role) -> UserSetup:
    """Create the user (and the organization if needed) and make them a member with `role`; idempotent for
    an existing user in that organization (the role is updated, the password left alone)."""
    org = find_org(session, org_name)
    created_org = org is None
    if org is None:
        org = create_org(session, org_name)
    user = find_user(session, username)
    created_user = user is None
    if user is None:
        user = create_user(session, username, password)
    member = membership(session, org.id, user.id)
    if member is None:
        add_member(session, org, user, role)
    elif member.role != role.value:
        set_role(session, member, role)
    return UserSetup(user, org, role, created_user, created_org)


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = find_user(session, username)
    ok = verify_password(user.password_hash if user else None, password)
    return user if ok and user is not None and user.is_active else None


def memberships_of(session: Session, user_id: str) -> list[tuple[Membership, Organization]]:
    rows = session.execute(
        select(Membership, Organization)
        .join(Organization, Organization.id == Membership.org_id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.name)
    )
    return [(m, o) for m, o in rows]
