"""Who may do what: roles, scopes, and the scopes each role grants. Pure data, used by the API's
single authorization dependency, by API keys and by the CLI."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Scope(StrEnum):
    DATASETS_READ = "datasets:read"
    DATASETS_WRITE = "datasets:write"
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    KNOWLEDGE_READ = "knowledge:read"
    KNOWLEDGE_WRITE = "knowledge:write"
    MODELS_READ = "models:read"
    MODELS_WRITE = "models:write"  # register versions, ask the promotion gate, roll an alias back
    MODELS_FORCE = "models:force"  # promote past the gate (audited with its reason)
    INFERENCE = "inference"  # ask the serving process's models, and rate their answers
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    KEYS_MANAGE = "keys:manage"
    AUDIT_READ = "audit:read"
    ORG_MANAGE = "org:manage"


_VIEWER = frozenset(
    {Scope.DATASETS_READ, Scope.TASKS_READ, Scope.KNOWLEDGE_READ, Scope.MODELS_READ, Scope.MEMBERS_READ}
)
_MEMBER = _VIEWER | {
    Scope.DATASETS_WRITE,
    Scope.TASKS_WRITE,
    Scope.KNOWLEDGE_WRITE,
    Scope.MODELS_WRITE,
    Scope.INFERENCE,
}
_ADMIN = _MEMBER | {Scope.MEMBERS_WRITE, Scope.KEYS_MANAGE, Scope.AUDIT_READ, Scope.MODELS_FORCE}
_OWNER = _ADMIN | {Scope.ORG_MANAGE}

# Viewers read; members create and control datasets, tasks, knowledge bases and model versions (promotions pass the
# gate); admins also manage members, keys, read the audit log and may force a promotion; owners also manage the
# organization.
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.VIEWER: _VIEWER,
    Role.MEMBER: _MEMBER,
    Role.ADMIN: _ADMIN,
    Role.OWNER: _OWNER,
}

# What a program's API key may be granted (never member, key or organization management).
API_KEY_SCOPES: frozenset[Scope] = frozenset(
    {
        Scope.DATASETS_READ,
        Scope.DATASETS_WRITE,
        Scope.TASKS_READ,
        Scope.TASKS_WRITE,
        Scope.KNOWLEDGE_READ,
        Scope.KNOWLEDGE_WRITE,
        Scope.MODELS_READ,
        Scope.MODELS_WRITE,
        Scope.INFERENCE,
    }
)

ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def key_scopes(granted: set[Scope] | frozenset[Scope], creator_role: Role) -> frozenset[Scope]:
    """An API key acts with the scopes it was granted, never beyond what its creator's role allows now."""
    return frozenset(granted) & API_KEY_SCOPES & ROLE_SCOPES[creator_role]


def can_assign_role(actor: Role, target_current: Role | None, target_new: Role | None) -> bool:
    """Admins manage members up to admin; only owners grant, change or remove the owner role."""
    if Scope.MEMBERS_WRITE not in ROLE_SCOPES[actor]:
        return False
    touches_owner = Role.OWNER in (target_current, target_new)
    return actor == Role.OWNER or not touches_owner
