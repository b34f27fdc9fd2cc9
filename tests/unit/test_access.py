"""Roles and scopes, tokens, API keys, passwords and the login throttle, without a server."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from api.security import LoginThrottle
from auth.api_keys import KEY_PATTERN, hash_api_key, key_prefix, matches, new_api_key
from auth.passwords import MIN_PASSWORD_LENGTH, hash_password, verify_password
from auth.tokens import ACCESS, ALGORITHM, REFRESH, InvalidToken, issue_token, read_token
from core.access import API_KEY_SCOPES, ROLE_RANK, ROLE_SCOPES, Role, Scope, can_assign_role, key_scopes
from core.errors import RateLimited

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
LADDER = [Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER]


# --- roles and scopes ---------------------------------------------------------------------------


def test_each_role_holds_strictly_more_than_the_one_below():
    for lower, higher in itertools.pairwise(LADDER):
        assert ROLE_SCOPES[lower] < ROLE_SCOPES[higher], (lower, higher)
        assert ROLE_RANK[lower] < ROLE_RANK[higher]
    assert ROLE_SCOPES[Role.OWNER] == frozenset(Scope)
    assert ROLE_SCOPES[Role.VIEWER] == {
        Scope.DATASETS_READ,
        Scope.TASKS_READ,
        Scope.KNOWLEDGE_READ,
        Scope.MODELS_READ,
        Scope.MEMBERS_READ,
    }
    assert ROLE_SCOPES[Role.MEMBER] - ROLE_SCOPES[Role.VIEWER] == {
        Scope.DATASETS_WRITE,
        Scope.TASKS_WRITE,
        Scope.KNOWLEDGE_WRITE,
        Scope.MODELS_WRITE,
        Scope.INFERENCE,
    }
    # forcing a promotion past the gate is for admins and owners
    assert ROLE_SCOPES[Role.ADMIN] - ROLE_SCOPES[Role.MEMBER] == {
        Scope.MEMBERS_WRITE,
        Scope.KEYS_MANAGE,
        Scope.AUDIT_READ,
        Scope.MODELS_FORCE,
    }
    assert ROLE_SCOPES[Role.OWNER] - ROLE_SCOPES[Role.ADMIN] == {Scope.ORG_MANAGE}


def test_api_keys_can_only_get_dataset_task_knowledge_and_model_scopes():
    assert {
        Scope.DATASETS_READ,
        Scope.DATASETS_WRITE,
        Scope.TASKS_READ,
        Scope.TASKS_WRITE,
        Scope.KNOWLEDGE_READ,
        Scope.KNOWLEDGE_WRITE,
        Scope.MODELS_READ,
        Scope.MODELS_WRITE,
        Scope.INFERENCE,
    } == API_KEY_SCOPES  # never models:force
    assert ROLE_SCOPES[Role.MEMBER] >= API_KEY_SCOPES


@pytest.mark.parametrize(
    "granted,creator,expected",
    [
        ({Scope.DATASETS_READ, Scope.DATASETS_WRITE}, Role.OWNER, {Scope.DATASETS_READ, Scope.DATASETS_WRITE}),
        ({Scope.DATASETS_READ, Scope.DATASETS_WRITE}, Role.MEMBER, {Scope.DATASETS_READ, Scope.DATASETS_WRITE}),
        # creator demoted
        (
            {Scope.DATASETS_READ, Scope.DATASETS_WRITE, Scope.TASKS_WRITE},
            Role.VIEWER,
            {Scope.DATASETS_READ},
        ),
        # never management
        (
            {Scope.KEYS_MANAGE, Scope.AUDIT_READ, Scope.ORG_MANAGE, Scope.TASKS_READ},
            Role.OWNER,
            {Scope.TASKS_READ},
        ),
        (set(), Role.OWNER, set()),
        (set(Scope), Role.ADMIN, set(API_KEY_SCOPES)),
    ],
)
def test_a_key_acts_with_granted_scopes_capped_by_key_scopes_and_its_creator(granted, creator, expected):
    assert key_scopes(granted, creator) == expected


ROLES_OR_NONE = [None, *LADDER]


def _may(actor: Role, current: Role | None, new: Role | None) -> bool:
    """The rule in words: viewers and members manage no one; admins manage everyone below owner (adding,
    changing, removing), and never make, change or remove an owner; owners manage everyone."""
    if actor in (Role.VIEWER, Role.MEMBER):
        return False
    if actor == Role.ADMIN:
        return Role.OWNER not in (current, new)
    return True


@pytest.mark.parametrize(
    "actor,current,new",
    [(a, c, n) for a in LADDER for c in ROLES_OR_NONE for n in ROLES_OR_NONE if (c, n) != (None, None)],
)
def test_can_assign_role_for_every_actor_current_and_new_role(actor, current, new):
    assert can_assign_role(actor, current, new) is _may(actor, current, new)


def test_can_assign_role_spot_checks():
    assert can_assign_role(Role.ADMIN, None, Role.ADMIN)  # add an admin
    assert can_assign_role(Role.ADMIN, Role.ADMIN, None)  # remove another admin
    assert not can_assign_role(Role.ADMIN, None, Role.OWNER)  # add an owner
    assert not can_assign_role(Role.ADMIN, Role.OWNER, Role.ADMIN)  # demote an owner
    assert not can_assign_role(Role.ADMIN, Role.OWNER, None)  # remove an owner
    assert can_assign_role(Role.OWNER, Role.OWNER, None)
    assert not can_assign_role(Role.MEMBER, None, Role.VIEWER)


# --- tokens ----------------------------------------------------------------------------------------


def test_a_token_round_trips_its_claims():
    before = datetime.now(UTC)
    token, expires_at = issue_token(SECRET, "user-1", "org-1", ACCESS, 3, timedelta(minutes=15))
    claims = read_token(SECRET, token, ACCESS)
    assert (claims.user_id, claims.org_id, claims.token_type, claims.version) == ("user-1", "org-1", ACCESS, 3)
    assert claims.expires_at == expires_at.replace(microsecond=0)  # `exp` is whole seconds
    assert timedelta(minutes=14) < claims.expires_at - before <= timedelta(minutes=15, seconds=1)
    assert jwt.get_unverified_header(token)["alg"] == ALGORITHM
    other, _ = issue_token(SECRET, "user-1", "org-1", ACCESS, 3, timedelta(minutes=15))
    assert other != token  # a unique `jti` each time


def test_an_expired_token_is_refused():
    token, _ = issue_token(SECRET, "u", "o", ACCESS, 0, timedelta(seconds=-1))
    with pytest.raises(InvalidToken, match="expired"):
        read_token(SECRET, token, ACCESS)


def test_a_token_of_the_other_type_is_refused():
    refresh, _ = issue_token(SECRET, "u", "o", REFRESH, 0, timedelta(days=1))
    access, _ = issue_token(SECRET, "u", "o", ACCESS, 0, timedelta(minutes=1))
    with pytest.raises(InvalidToken, match="expected an access token"):
        read_token(SECRET, refresh, ACCESS)
    with pytest.raises(InvalidToken, match="expected an refresh token"):
        read_token(SECRET, access, REFRESH)


def test_a_token_signed_with_another_secret_or_tampered_with_is_refused():
    token, _ = issue_token(SECRET, "u", "o", ACCESS, 0, timedelta(minutes=1))
    with pytest.raises(InvalidToken, match="invalid"):
        read_token("another-secret-that-is-also-long-enough", token, ACCESS)
    header, payload, signature = token.split(".")
    with pytest.raises(InvalidToken):
        read_token(SECRET, f"{header}.{payload}x.{signature}", ACCESS)
    unsigned = jwt.encode(jwt.decode(token, options={"verify_signature": False}), key=None, algorithm="none")
    with pytest.raises(InvalidToken):
        read_token(SECRET, unsigned, ACCESS)
    for garbage in ("", "not-a-jwt", "a.b.c"):
        with pytest.raises(InvalidToken):
            read_token(SECRET, garbage, ACCESS)


def _payload(**changes) -> dict:
    now = datetime.now(UTC)
    payload = {"sub": "u", "org": "o", "typ": ACCESS, "ver": 0, "iat": now, "exp": now + timedelta(minutes=1)}
    return {k: v for k, v in {**payload, **changes}.items() if v is not None}


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": None},
        {"org": None},
        {"typ": None},
        {"ver": None},
        {"exp": None},
        {"iat": None},
        {"org": 7},
        {"ver": "0"},
        {"sub": 12},
    ],
)
def test_a_token_missing_a_claim_or_with_a_claim_of_the_wrong_type_is_refused(changes):
    with pytest.raises(InvalidToken):
        read_token(SECRET, jwt.encode(_payload(**changes), SECRET, algorithm=ALGORITHM), ACCESS)


def test_a_hand_made_token_with_every_claim_is_accepted():
    assert read_token(SECRET, jwt.encode(_payload(), SECRET, algorithm=ALGORITHM), ACCESS).user_id == "u"


# --- API keys --------------------------------------------------------------------------------------


def test_api_keys_have_a_findable_prefix_and_only_a_hash_is_kept():
    key, prefix, stored = new_api_key()
    assert KEY_PATTERN.match(key) and key.startswith(f"wlk_{prefix}_")
    assert len(prefix) == 12 and all(c in "0123456789abcdef" for c in prefix)
    assert key_prefix(key) == prefix
    assert stored == hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest() and key not in stored
    assert matches(key, stored)
    other, other_prefix, other_stored = new_api_key()
    assert other != key and other_prefix != prefix and not matches(other, stored) and not matches(key, other_stored)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "wlk_",
        "wlk_abc_def",
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "wlk_0123456789ab_" + "x" * 42,
        "wlk_0123456789ab_" + "x" * 44,
        "wlk_0123456789a_" + "x" * 43,
        "WLK_0123456789ab_" + "x" * 43,
        " wlk_0123456789ab_" + "x" * 43,
    ],
)
def test_anything_else_is_not_an_api_key(text):
    assert key_prefix(text) is None


def test_a_well_formed_key_parses_even_if_unknown():
    assert key_prefix("wlk_0123456789ab_" + "x" * 43) == "0123456789ab"


# --- passwords -------------------------------------------------------------------------------------


def test_passwords_are_hashed_with_argon2id_and_verified():
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct horsE")
    assert not verify_password(stored, "")
    assert hash_password("correct horse") != stored  # salted


def test_passwords_have_a_minimum_length():
    with pytest.raises(ValueError, match=f"at least {MIN_PASSWORD_LENGTH} characters"):
        hash_password("x" * (MIN_PASSWORD_LENGTH - 1))
    assert verify_password(hash_password("x" * MIN_PASSWORD_LENGTH), "x" * MIN_PASSWORD_LENGTH)


def test_an_unknown_user_or_a_broken_hash_never_verifies():
    assert verify_password(None, "wlops-no-such-user") is False  # not even the dummy hash's own password
    assert verify_password(None, "anything") is False
    assert verify_password("not-an-argon2-hash", "anything") is False


# --- the login throttle -------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_allows_the_limit_then_refuses():
    clock = Clock()
    throttle = LoginThrottle(3, clock=clock)
    for _ in range(3):
        throttle.check("alice", "10.0.0.1")
        throttle.failed("alice", "10.0.0.1")
    with pytest.raises(RateLimited, match="at most 3 per minute"):
        throttle.check("alice", "10.0.0.1")
    throttle.check("alice", "10.0.0.2")  # per client
    throttle.check("bob", "10.0.0.1")  # and per username


def test_failures_leave_the_window_after_a_minute():
    clock = Clock()
    throttle = LoginThrottle(2, clock=clock)
    throttle.failed("alice", "ip")
    clock.now += 30
    throttle.failed("alice", "ip")
    clock.now += 29
    with pytest.raises(RateLimited):
        throttle.check("alice", "ip")
    clock.now += 1.5  # the first failure is now more than 60 s old
    throttle.check("alice", "ip")
    throttle.failed("alice", "ip")
    with pytest.raises(RateLimited):
        throttle.check("alice", "ip")
    clock.now += 61
    throttle.check("alice", "ip")


def test_a_successful_login_clears_the_failures():
    throttle = LoginThrottle(2, clock=Clock())
    throttle.failed("alice", "ip")
    throttle.failed("alice", "ip")
    with pytest.raises(RateLimited):
        throttle.check("alice", "ip")
    throttle.succeeded("alice", "ip")
    throttle.check("alice", "ip")
