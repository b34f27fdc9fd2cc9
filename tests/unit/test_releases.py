"""Releases as plain rules and database operations: the sticky, deterministic traffic split and how serving resolves an
alias through it, the analysis rule, the release's transition table, decisions made exactly once by their key, the
alias moved under a release stopping it, and one active release per alias."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select

from activities.context import ActivityContext
from core.errors import Conflict, Invalid, NotFound
from core.status import RELEASE_TRANSITIONS, IllegalTransition, ReleaseStatus, check_release_transition
from db.models import AliasMove, AuditEntry, ModelAlias, RegisteredModel, Release, ReleaseDecision, new_id
from ml.release import (
    CANDIDATE,
    CURRENT,
    PlanInvalid,
    Thresholds,
    arm_figures,
    arm_for,
    bucket,
    fact_figures,
    judge,
    validated_steps,
)
from services import promotion, registry, releases
from services.registry import Actor
from services.releases import route
from testkit.factories import version_row
from testkit.registry import point

# ---------------------------------------------------------------- the split


def test_the_split_is_deterministic_sticky_and_close_to_its_weight():
    keys = [f"conv-{i}" for i in range(10_000)]
    assert [bucket("r1", k) for k in keys[:50]] == [bucket("r1", k) for k in keys[:50]]
    assert all(0 <= bucket("r1", k) < 100 for k in keys)
    for weight in (0, 10, 50, 100):
        share = sum(arm_for("r1", k, weight) == CANDIDATE for k in keys) / len(keys)
        assert abs(share - weight / 100) < 0.02, (weight, share)
    # a larger weight only adds conversations to the candidate: none that had it at 10% goes back
    at_10 = {k for k in keys if arm_for("r1", k, 10) == CANDIDATE}
    at_50 = {k for k in keys if arm_for("r1", k, 50) == CANDIDATE}
    assert at_10 < at_50
    # another release splits the same conversations differently
    other = {k for k in keys if arm_for("r2", k, 50) == CANDIDATE}
    assert other != at_50


def test_the_bucket_is_a_fixed_function_of_release_and_key():
    # sha256("r1:conv-1")'s first 8 bytes mod 100: a change of the hash would move live conversations between arms
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"r1:conv-1").digest()[:8], "big") % 100
    assert bucket("r1", "conv-1") == expected


# ---------------------------------------------------------------- the analysis


def entries(completed: int, failed: int = 0, down: int = 0, latency: int = 100) -> list[tuple[str, int, str | None]]:
    rows: list[tuple[str, int, str | None]] = [
        ("completed", latency, "down" if i < down else None) for i in range(completed)
    ]
    return rows + [("failed", 5, None)] * failed


def test_arm_figures_count_errors_latency_and_answers_rated_down():
    figures = arm_figures(entries(18, failed=2, down=3) + [("cancelled", 900, None)])
    assert figures == {
        "requests": 21,
        "errors": 2,
        "error_rate": round(2 / 21, 4),
        "p95_latency_ms": 100.0,
        "rated_down": 3,
        "down_rate": round(3 / 18, 4),
    }
    latencies = arm_figures([("completed", ms, None) for ms in range(1, 101)])
    assert latencies["p95_latency_ms"] == 95.0
    assert arm_figures([]) == {
        "requests": 0,
        "errors": 0,
        "error_rate": None,
        "p95_latency_ms": None,
        "rated_down": 0,
        "down_rate": None,
    }


LIMITS = Thresholds(min_requests=10, max_error_rate=0.05, max_down_rate=0.1, max_latency_ratio=1.5, latency_slack_ms=50)


@pytest.mark.parametrize(
    ("current", "candidate", "weight", "outcome", "says"),
    [
        (entries(40), entries(5), 10, (False, False), "candidate has 5 of 10 requests"),
        (entries(4), entries(20), 50, (False, False), "current has 4 of 10 requests"),
        (entries(0), entries(20), 100, (True, True), "within every threshold"),  # at 100% only the candidate counts
        (entries(40), entries(20), 10, (True, True), "within every threshold"),
        (entries(40), entries(17, failed=3), 10, (True, False), "error rate 0.150 > 0.050"),
        (entries(38, failed=2), entries(19, failed=1), 10, (True, True), "within every threshold"),
        (entries(40), entries(20, down=5), 10, (True, False), "rated down 0.250 > 0.100"),
        (entries(40, latency=100), entries(20, latency=250), 10, (True, False), "p95 latency 250 ms > 200 ms"),
        (entries(40, latency=100), entries(20, latency=190), 10, (True, True), "within every threshold"),
    ],
)
def test_the_analysis_rule(current, candidate, weight, outcome, says):
    enough, passed, reason = judge(arm_figures(current), arm_figures(candidate), weight, LIMITS)
    assert (enough, passed) == outcome and says in reason, reason


@pytest.mark.parametrize(
    ("current", "candidate", "passed", "says"),
    [
        ([True] * 8 + [False] * 2, [False] * 5, False, "0 of 5 fact-checked answers right (0.000 < 0.600"),
        ([True] * 8 + [False] * 2, [True] * 3 + [False] * 2, True, "within every threshold"),  # 0.6: the limit
        ([True] * 8 + [False] * 2, [False] * 4, True, "within every threshold"),  # 4 < min_fact_checked: no verdict
        ([True] * 4, [False] * 9, True, "within every threshold"),  # nor with the current's 4
    ],
)
def test_answers_to_known_questions_fail_a_candidate_that_gets_them_wrong(current, candidate, passed, says):
    facts = {CURRENT: fact_figures(current), CANDIDATE: fact_figures(candidate)}
    enough, ok, reason = judge(arm_figures(entries(40)), arm_figures(entries(20)), 10, LIMITS, facts)
    assert enough and ok is passed and says in reason, reason


def test_answers_are_judged_by_the_checks_of_the_known_question_they_match():
    from schemas.checks import parse_checks
    from services.release_facts import KnownQuestion, judged_traffic

    words = ["port", "console", "price", "f4", "weather"]

    def embed(texts: list[str]):
        import numpy as np

        vectors = np.array([[float(w in t.lower()) for w in words] + [0.01] for t in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    known = [
        KnownQuestion("Which port does the console use?", parse_checks([{"type": "number", "value": 7410}])),
        KnownQuestion("What is the F4's price?", parse_checks([{"type": "contains_any", "values": ["$899"]}])),
    ]
    answers = [
        (CURRENT, "Which console port?", "Port 7410."),
        (CURRENT, "The F4 price?", "It costs $899."),
        (CANDIDATE, "On which port is the console?", "Port 7421."),
        (CANDIDATE, "Weather tomorrow?", "Sunny."),  # matches no known question: not judged
    ]
    assert judged_traffic(known, answers, embed) == {
        CURRENT: {"judged": 2, "right": 2, "fact_accuracy": 1.0},
        CANDIDATE: {"judged": 1, "right": 0, "fact_accuracy": 0.0},
    }


def test_thresholds_and_steps_are_checked():
    with pytest.raises(PlanInvalid, match="min_requests must be in"):
        Thresholds(min_requests=0).validated()
    with pytest.raises(PlanInvalid, match="max_wait_seconds must be >= bake_seconds"):
        Thresholds(bake_seconds=60, max_wait_seconds=10).validated()
    for steps, message in (([], "give 1 to 20"), ([50, 10, 100], "rise strictly"), ([10, 50], "last step")):
        with pytest.raises(PlanInvalid, match=message):
            validated_steps(steps)
    assert validated_steps([10, 50, 100]) == [10, 50, 100]
    with pytest.raises(Invalid, match="rise strictly"):  # what a caller of the service gets: a 422
        releases.checked_plan([50, 10, 100], Thresholds())


# ---------------------------------------------------------------- the transition table


def test_the_release_transition_table():
    S = ReleaseStatus
    allowed = {
        (S.PENDING, S.RUNNING),
        (S.PENDING, S.ABORTED),
        (S.RUNNING, S.PAUSED),
        (S.RUNNING, S.PROMOTED),
        (S.RUNNING, S.ROLLED_BACK),
        (S.RUNNING, S.ABORTED),
        (S.PAUSED, S.RUNNING),
        (S.PAUSED, S.PROMOTED),
        (S.PAUSED, S.ABORTED),
    }
    assert {(a, b) for a, targets in RELEASE_TRANSITIONS.items() for b in targets} == allowed
    for current, target in itertools.product(S, S):
        if (current, target) in allowed or current == target:
            assert check_release_transition(current, target) == target
        else:
            with pytest.raises(IllegalTransition):
                check_release_transition(current, target)


# ---------------------------------------------------------------- decisions and routing on the database


@pytest.fixture
def released(settings):
    """Model `bot` with versions 1 and 2, production at 1, and a release of production to 2 (PENDING)."""
    ctx = ActivityContext.from_settings(settings)
    with ctx.sessions() as session:
        model = RegisteredModel(id=new_id(), org_id="org", name="bot", base_model="tiny", created_by="u1")
        session.add(model)
        session.flush()
        for number in (1, 2, 3):
            session.add(
                version_row(
                    model_id=model.id, org_id="org", number=number, task_id=new_id(), adapter_key=f"a/{number}/"
                )
            )
        session.commit()
    point(ctx, model, "production", 1)
    with ctx.sessions() as session:
        model = registry.get_model(session, "org", "bot")
        release, inp = releases.open_release(
            session, model, 2, alias="production", steps=[10, 50, 100], thresholds=Thresholds(), actor=Actor("u1")
        )
    assert inp.steps == [10, 50, 100] and inp.bake_seconds == 300
    return ctx, model, release.id


def counts(ctx, release_id: str) -> tuple[int, int, int]:
    with ctx.sessions() as session:
        return (
            session.scalar(select(func.count()).where(ReleaseDecision.release_id == release_id)) or 0,
            session.scalar(select(func.count()).where(AliasMove.kind == "release")) or 0,
            session.scalar(select(func.count()).where(AuditEntry.resource_id == release_id)) or 0,
        )


def test_one_active_release_per_alias_and_what_a_release_needs(released):
    ctx, model, release_id = released
    with ctx.sessions() as session:
        model = registry.get_model(session, "org", "bot")
        options = {"steps": [10, 100], "thresholds": Thresholds(), "actor": Actor("u1")}
        with pytest.raises(Conflict, match=f"release {release_id} is already PENDING on alias production"):
            releases.open_release(session, model, 3, alias="production", **options)
        with pytest.raises(Conflict, match="already points at version 1"):
            releases.open_release(session, model, 1, alias="production", **options)
        with pytest.raises(NotFound, match="has no alias staging"):
            releases.open_release(session, model, 3, alias="staging", **options)
        with pytest.raises(NotFound, match="has no version 9"):
            releases.open_release(session, model, 9, alias="production", **options)
        # nor does the promotion gate take an alias a release is moving
        with pytest.raises(Conflict, match=f"release {release_id} is PENDING on alias production"):
            promotion.promotion_target(session, model, 3, "production")
        assert promotion.promotion_target(session, model, 3, "staging")[0].version == 3


def test_decisions_are_made_once_by_their_key_and_the_promotion_moves_the_alias_once(released):
    ctx, model, release_id = released
    with ctx.sessions() as session:
        start = releases.decide(session, release_id, "start", "start", "started", status=ReleaseStatus.RUNNING)
        first = releases.decide(session, release_id, "traffic-0", "traffic", "10%", weight=10, guard_alias=True)
        again = releases.decide(session, release_id, "traffic-0", "traffic", "10%", weight=10, guard_alias=True)
        assert start.status == "RUNNING" and first.id == again.id and first.candidate_weight == 10
    assert counts(ctx, release_id) == (2, 0, 3)  # the start's audit entry, and one per decision

    with ctx.sessions() as session:
        for _ in range(2):  # a retried promotion
            promoted = releases.decide(
                session,
                release_id,
                "promote",
                "promote",
                "every step passed",
                status=ReleaseStatus.PROMOTED,
                weight=100,
                promote=True,
            )
        assert promoted.status == "PROMOTED"
        assert registry.aliases_of(session, registry.get_model(session, "org", "bot"))["production"].version == 2
        # a finished release changes no more: a late decision returns its last one
        late = releases.decide(session, release_id, "abort", "abort", "too late", status=ReleaseStatus.ABORTED)
        assert late.key == "promote"
        release = session.get_one(Release, release_id)
        assert (release.status, release.candidate_weight, release.finished_at is not None) == ("PROMOTED", 100, True)
    assert counts(ctx, release_id) == (3, 1, 4)  # the alias move has its own entry, on the model


def test_an_alias_moved_under_a_release_stops_it_before_any_traffic_change(released):
    ctx, model, release_id = released
    with ctx.sessions() as session:
        releases.decide(session, release_id, "start", "start", "started", status=ReleaseStatus.RUNNING)
    point(ctx, model, "production", 3)  # someone else moves it
    with ctx.sessions() as session:
        stopped = releases.decide(session, release_id, "traffic-0", "traffic", "10%", weight=10, guard_alias=True)
        assert (stopped.kind, stopped.status, stopped.candidate_weight) == ("stopped", "ABORTED", 0)
        assert "now points at version 3, not at version 1" in stopped.reason
        assert registry.aliases_of(session, registry.get_model(session, "org", "bot"))["production"].version == 3


def test_serving_splits_an_alias_only_while_its_release_runs(released):
    ctx, model, release_id = released
    conversations = [f"c{i}" for i in range(400)]

    def served(reference: str) -> list[tuple[str, str | None, str | None]]:
        with ctx.sessions() as session:
            return [
                (r.served.label, r.release_id, r.arm)
                for r in (route(session, "org", reference, c) for c in conversations)
            ]

    assert {label for label, _, _ in served("bot")} == {"bot@1"}  # PENDING: not split yet
    with ctx.sessions() as session:
        releases.decide(session, release_id, "start", "start", "started", status=ReleaseStatus.RUNNING)
        releases.decide(session, release_id, "traffic-0", "traffic", "50%", weight=50, guard_alias=True)
    split = served("bot@production")
    assert split == served("bot")  # `name` is its production alias; the same conversations, the same arms
    assert {(label, arm) for label, _, arm in split} == {("bot@1", CURRENT), ("bot@2", CANDIDATE)}
    assert {rid for _, rid, _ in split} == {release_id}
    assert 150 < sum(arm == CANDIDATE for _, _, arm in split) < 250
    assert [arm for _, _, arm in split] == [arm_for(release_id, c, 50) for c in conversations]
    assert {label for label, _, _ in served("bot@1")} == {"bot@1"}  # an exact version is never split
    with ctx.sessions() as session:
        releases.decide(session, release_id, "pause-1", "pause", "paused", status=ReleaseStatus.PAUSED)
    assert set(served("bot")) == {("bot@1", None, None)}


def test_a_version_in_a_release_is_not_deleted_and_a_deleted_model_takes_its_releases(released):
    ctx, model, release_id = released
    with ctx.sessions() as session:
        model = registry.get_model(session, "org", "bot")
        with pytest.raises(Conflict, match="version 2 of model bot is in a release"):
            registry.delete_version(session, model, 2)
        releases.decide(session, release_id, "abort", "abort", "aborted", status=ReleaseStatus.ABORTED, weight=0)
        registry.delete_version(session, model, 2)
        registry.delete_version(session, model, 3)
    with ctx.sessions() as session:
        model = registry.get_model(session, "org", "bot")
        session.execute(ModelAlias.__table__.delete().where(ModelAlias.model_id == model.id))  # nothing served
        session.commit()
        registry.delete_model(session, model)
        assert session.get(Release, release_id) is None
        assert session.scalar(select(func.count()).where(ReleaseDecision.release_id == release_id)) == 0
