"""Releases: an alias moves from its current version to a candidate in weighted steps (10% -> 50% -> 100%), each step
analysed from the question-answering history, rolled back automatically when the candidate does worse, paused (not
aborted) when too few requests came, and the alias moved once the last step passes (`workflows/release.py` drives it).

The rules themselves (the plan, the split, the analysis) are plain functions in `ml/release.py`.

- **The split** (`route`): while a release is RUNNING on an alias, a request for the alias goes to the candidate when
  its sticky key (the conversation id, else the request id) hashes with the release id into [0, 100) below the
  candidate's weight; so a conversation stays on one version for the whole step, and a larger weight only adds
  conversations. The history records which release and arm answered.
- **Decisions** (`decide`): every change of a release (a traffic change, an analysis, a pause, a promotion, ...) is a
  `ReleaseDecision` named by a key unique within the release, written with its figures and in the audit log in the
  transaction that makes the change; a retried or replayed activity finds its decision made and changes nothing, so
  each traffic change and the alias move happen exactly once. A decision that changes traffic or moves the alias
  first checks that the alias still points at the release's current version: moved by someone else, the release
  stops (ABORTED), nothing changed.
- **The analysis** (`analyse`, over `ml.release.arm_figures` and `judge`): per arm, from the requests asked since the
  step began: requests, error rate, p95 latency, the rate of answers rated down; the candidate fails on any threshold.

At most one release is active (PENDING, RUNNING or PAUSED) on an alias. Every lookup is inside one organization.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from core.access import Scope
from core.clock import as_utc, utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from core.status import ACTIVE_RELEASE_STATUSES, RELEASE_CONTROLS, ReleaseStatus, check_release_transition
from db.models import AuditEntry, ModelVersion, QAEntry, RegisteredModel, Release, ReleaseDecision, Suite, new_id
from db.session import page
from ml.release import (
    CANDIDATE,
    COMPLETED,
    CURRENT,
    PlanInvalid,
    Thresholds,
    arm_figures,
    arm_for,
    judge,
    missing_requests,
    validated_steps,
)
from schemas.api import ReleaseDecisionPublic, ReleasePublic
from schemas.workflow_io import ActivityTimeouts, ReleaseControl, ReleaseInput, ReleaseResult
from services import release_facts, suites
from services.registry import Actor, Served, aliases_of, get_version, move_alias, resolve_served, running_gate
from services.tasks import CONTROL_TIMEOUT, Temporal
from storage.object_store import ObjectStore
from suites.cases import Case
from temporal_client.workflows import ReleaseWorkflow

ACTIONS = tuple(RELEASE_CONTROLS)
# The release's row is written by the workflow's activities a moment before the workflow itself has taken the
# decision in: a control the row allows but the workflow's validator refuses is sent again for this long.
CATCH_UP_SECONDS, CATCH_UP_INTERVAL = 5.0, 0.2


def release_workflow_id(release_id: str) -> str:
    return f"release-{release_id}"


# ---------------------------------------------------------------- the split


@dataclass(frozen=True)
class Routed:
    """What a completion runs on, and the release whose split chose it (None outside a release)."""

    served: Served
    release_id: str | None = None
    arm: str | None = None


def route(session: Session, org_id: str, reference: str, sticky_key: str) -> Routed:
    """`reference` resolved as `registry.resolve_served` does, then split by the release RUNNING on its alias, if any
    (and only while the alias still points at the release's current version)."""
    served = resolve_served(session, org_id, reference)
    selector = reference.partition("@")[2] or "production"
    if served.version is None or selector.isdigit():
        return Routed(served)
    release = session.scalar(
        select(Release).where(
            Release.model_id == served.version.model_id,
            Release.alias == selector,
            Release.status == ReleaseStatus.RUNNING.value,
        )
    )
    if release is None or served.version.version != release.current_version:
        return Routed(served)
    arm = arm_for(release.id, sticky_key, release.candidate_weight)
    if arm == CANDIDATE:
        candidate = session.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == release.model_id, ModelVersion.version == release.candidate_version
            )
        )
        if candidate is None:  # deleted under the release: the alias's own version answers
            return Routed(served)
        name = served.label.rpartition("@")[0]
        served = Served(f"{name}@{candidate.version}", served.base_model, candidate)
    return Routed(served, release.id, arm)


# ---------------------------------------------------------------- the analysis


@dataclass(frozen=True)
class Analysis:
    enough: bool
    passed: bool
    reason: str
    figures: dict
    alias_moved: bool  # the alias no longer points at the release's current version: the release must stop


def analyse(
    session: Session, release_id: str, step_index: int, since: datetime, store: ObjectStore | None = None
) -> Analysis:
    """The step's figures per arm from the history since `since`, and `judge`'s verdict on them; with `store`, also
    each arm's answers to questions the versions know the facts of, judged by their checks
    (`services.release_facts`)."""
    release = session.get_one(Release, release_id)
    model = session.get_one(RegisteredModel, release.model_id)
    pointing = aliases_of(session, model).get(release.alias)
    thresholds = Thresholds(**release.thresholds)
    rows = step_entries(session, release_id, since)
    since = as_utc(since)
    arms = {
        arm: arm_figures([(row.status, row.latency_ms, row.rating) for row in rows if row.release_arm == arm])
        for arm in (CURRENT, CANDIDATE)
    }
    weight = release.steps[step_index]
    # the answers are fact-checked only once the step has its requests: not at every poll while it waits for them
    enough_requests = not missing_requests(arms[CURRENT], arms[CANDIDATE], weight, thresholds)
    facts = _judged_facts(session, store, release, rows) if store is not None and enough_requests else None
    enough, passed, reason = judge(arms[CURRENT], arms[CANDIDATE], weight, thresholds, facts)
    figures = {"step": step_index + 1, "weight": weight, "since": since.isoformat(), **arms}
    if facts is not None:
        figures["facts"] = facts
    moved = pointing is None or pointing.version != release.current_version
    return Analysis(enough, passed, reason, figures, moved)


def step_entries(session: Session, release_id: str, since: datetime) -> list:
    """The history entries the release's traffic split answered since `since`: an entry is recorded when its answer
    ends, so one asked before the step began belongs to the step before."""
    rows = session.execute(
        select(
            QAEntry.release_arm,
            QAEntry.status,
            QAEntry.latency_ms,
            QAEntry.rating,
            QAEntry.created_at,
            QAEntry.messages,
            QAEntry.answer,
        )
        .where(QAEntry.release_id == release_id, QAEntry.created_at >= since)
        .order_by(QAEntry.created_at)
    ).all()
    return [row for row in rows if as_utc(row.created_at) - timedelta(milliseconds=row.latency_ms) >= as_utc(since)]


@dataclass
class ShadowPlan:
    """What the shadow of a step needs (`suites.shadow`): the step's real prompts, the cases of the blocking suites the
    release ran, each version as a suite run would answer with it, and how many prompts to ask and may break."""

    org_id: str
    prompts: list[str]
    cases: list[Case]
    versions: dict[str, suites.RunTarget]  # current | candidate -> the model, adapter and retrieval settings
    limit: int
    max_broken: int


def shadow_plan(session: Session, release_id: str, since: datetime) -> ShadowPlan:
    release = session.get_one(Release, release_id)
    model = session.get_one(RegisteredModel, release.model_id)
    thresholds = Thresholds(**release.thresholds)
    cases = [
        case
        for run in suites.release_runs(session, release.id)
        if (suite := session.get_one(Suite, run.suite_id)).blocking
        for case in suites.cases_of(suite)
    ]
    prompts = [q for row in step_entries(session, release_id, since) if (q := last_question(row.messages))]
    versions = {
        arm: suites.RunTarget([], model.base_model, v.adapter_key, v.retrieval_top_k or 3, v.context_statements)
        for arm, number in ((CURRENT, release.current_version), (CANDIDATE, release.candidate_version))
        if (v := get_version(session, model, number))
    }
    return ShadowPlan(release.org_id, prompts, cases, versions, thresholds.shadow_prompts, thresholds.max_shadow_broken)


def _judged_facts(session: Session, store: ObjectStore, release: Release, rows: list) -> dict | None:
    """Each arm's completed answers to known questions, judged (None when the versions know no question)."""
    known = release_facts.known_questions(session, store, release)
    if not known:
        return None
    from knowledge.embeddings import embed

    answers = [
        (row.release_arm, question, row.answer)
        for row in rows
        if row.status == COMPLETED and (question := last_question(row.messages))
    ]
    return release_facts.judged_traffic(known, answers, embed)


def last_question(messages: list) -> str | None:
    """The last user message of a recorded conversation."""
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else None


# ---------------------------------------------------------------- starting, reading


def open_release(
    session: Session,
    model: RegisteredModel,
    candidate_version: int,
    *,
    alias: str,
    steps: list[int],
    thresholds: Thresholds,
    actor: Actor,
    settings: Settings | None = None,
) -> tuple[Release, ReleaseInput]:
    """Record a release (PENDING) of `alias` to `candidate_version`, with a run against the candidate of each blocking
    suite the alias requires, and its workflow's input; refused (409) while another release is active on the alias, a
    gate decides it, or the alias already points at the candidate. `settings` give the suite runs' timeouts."""
    steps, thresholds = checked_plan(steps, thresholds)
    current, candidate = release_target(session, model, candidate_version, alias)
    release = Release(
        id=new_id(),
        org_id=model.org_id,
        model_id=model.id,
        alias=alias,
        current_version=current.version,
        candidate_version=candidate.version,
        steps=steps,
        step_index=0,
        candidate_weight=0,
        status=ReleaseStatus.PENDING.value,
        thresholds=asdict(thresholds),
        created_by=actor.user_id,
        created_key_id=actor.api_key_id,
    )
    session.add(release)
    session.flush()
    runs = suites.open_release_runs(session, release.id, alias, model, candidate, actor.user_id)
    _audit(session, model, release, f"started: v{current.version} -> v{candidate.version} in steps {steps}", actor)
    session.commit()
    return release, ReleaseInput(
        release_id=release.id,
        steps=steps,
        bake_seconds=thresholds.bake_seconds,
        max_wait_seconds=thresholds.max_wait_seconds,
        poll_seconds=thresholds.poll_seconds,
        suite_run_ids=[run.id for run in runs],
        suite_timeouts=suites.run_timeouts(settings) if settings else ActivityTimeouts(),
    )


def checked_plan(steps: list[int], thresholds: Thresholds) -> tuple[list[int], Thresholds]:
    """The steps and thresholds, or Invalid naming what a release cannot run with."""
    try:
        return validated_steps(list(steps)), thresholds.validated()
    except PlanInvalid as exc:
        raise Invalid(str(exc)) from exc


def release_target(
    session: Session, model: RegisteredModel, candidate_version: int, alias: str
) -> tuple[ModelVersion, ModelVersion]:
    """The version `alias` points at and the candidate, refused as starting a release would be; changes nothing (a dry
    run's preview)."""
    candidate = get_version(session, model, candidate_version)
    current = aliases_of(session, model).get(alias)
    if current is None:
        raise NotFound(f"model {model.name} has no alias {alias}: a release moves an alias that serves a version")
    if current.id == candidate.id:
        raise Conflict(f"alias {alias} of model {model.name} already points at version {candidate_version}")
    active = active_release(session, model, alias)
    if active is not None:
        raise Conflict(f"release {active.id} is already {active.status} on alias {alias} of model {model.name}")
    if running_gate(session, model, alias=alias):
        raise Conflict(f"a promotion gate is deciding alias {alias} of model {model.name}; wait for its decision")
    return current, candidate


def judge_suites(session: Session, release_id: str) -> ReleaseDecision:
    """The blocking suites' runs against the candidate, decided once: a failing case (or a run that could not answer)
    rolls the release back before any traffic, naming the suite and the case."""
    figures, refusal = suites.runs_verdict(session, suites.release_runs(session, release_id))
    if refusal:
        return decide(
            session,
            release_id,
            "suites",
            "rollback",
            refusal,
            status=ReleaseStatus.ROLLED_BACK,
            weight=0,
            figures={"suites": figures},
        )
    return decide(session, release_id, "suites", "suites", "every blocking suite passed", figures={"suites": figures})


def release_public(session: Session, model: RegisteredModel, release: Release) -> ReleasePublic:
    """The release as the API and the MCP server show it: with every decision and its figures."""
    decisions = [
        ReleaseDecisionPublic.model_validate(d, from_attributes=True) for d in decisions_of(session, release.id)
    ]
    shown = {
        k: getattr(release, k) for k in ReleasePublic.model_fields if k not in ("release_id", "model_name", "decisions")
    }
    return ReleasePublic(release_id=release.id, model_name=model.name, decisions=decisions, **shown)


async def start_release(
    session: Session,
    temporal: Temporal,
    model: RegisteredModel,
    candidate_version: int,
    *,
    alias: str,
    steps: list[int],
    thresholds: Thresholds,
    actor: Actor,
    settings: Settings | None = None,
) -> Release:
    """Record the release and start its workflow (nothing is left behind if Temporal cannot start it)."""
    release, inp = open_release(
        session,
        model,
        candidate_version,
        alias=alias,
        steps=steps,
        thresholds=thresholds,
        actor=actor,
        settings=settings,
    )
    try:
        client = await temporal()
        await client.start_workflow(
            ReleaseWorkflow.run, inp, id=release_workflow_id(release.id), task_queue=TASK_QUEUE_WORKFLOWS
        )
    except (RPCError, Unavailable) as exc:
        for run in suites.release_runs(session, release.id):
            session.delete(run)
        session.delete(release)
        session.commit()
        raise Unavailable(f"could not start the release on Temporal: {getattr(exc, 'message', exc)}") from exc
    return release


def active_release(session: Session, model: RegisteredModel, alias: str) -> Release | None:
    return session.scalars(
        select(Release).where(
            Release.model_id == model.id,
            Release.alias == alias,
            Release.status.in_([s.value for s in ACTIVE_RELEASE_STATUSES]),
        )
    ).first()


def get_release(session: Session, model: RegisteredModel, release_id: str) -> Release:
    release = session.get(Release, release_id)
    if release is None or release.model_id != model.id:
        raise NotFound(f"release {release_id} of model {model.name} not found")
    return release


def list_releases(session: Session, model: RegisteredModel, limit: int, offset: int) -> tuple[list[Release], int]:
    query = select(Release).where(Release.model_id == model.id)
    return page(session, query, Release.created_at.desc(), Release.id, limit=limit, offset=offset)


def decisions_of(session: Session, release_id: str) -> list[ReleaseDecision]:
    query = select(ReleaseDecision).where(ReleaseDecision.release_id == release_id)
    return list(session.scalars(query.order_by(ReleaseDecision.id)))


# ---------------------------------------------------------------- decisions


def decide(
    session: Session,
    release_id: str,
    key: str,
    kind: str,
    reason: str,
    *,
    status: ReleaseStatus | None = None,
    weight: int | None = None,
    step_index: int | None = None,
    figures: dict | None = None,
    actor: Actor | None = None,
    guard_alias: bool = False,
    promote: bool = False,
) -> ReleaseDecision:
    """Make the decision `key` of a release once (see the module's docstring): a decision already made is returned as
    it was; a finished release changes no more (its last decision is returned)."""
    release = session.get_one(Release, release_id, with_for_update=True)
    made = _decision(session, release_id, key)
    if made is not None:
        return made
    now = ReleaseStatus(release.status)
    if now not in ACTIVE_RELEASE_STATUSES:  # finished meanwhile (an abort raced this decision)
        return decisions_of(session, release_id)[-1]
    model = session.get_one(RegisteredModel, release.model_id)
    actor = actor or Actor(release.created_by, release.created_key_id)
    if guard_alias or promote:
        pointing = aliases_of(session, model).get(release.alias)
        if pointing is None or pointing.version != release.current_version:
            kind, status, weight, promote, figures = "stopped", ReleaseStatus.ABORTED, 0, False, None
            reason = (
                f"stopped: alias {release.alias} now points at "
                f"{f'version {pointing.version}' if pointing else 'nothing'}, not at version "
                f"{release.current_version} as when the release started; nothing changed"
            )
    target = check_release_transition(now, status or now)
    if promote:
        candidate = session.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.version == release.candidate_version
            )
        )
        if candidate is None:
            kind, target, weight = "stopped", check_release_transition(now, ReleaseStatus.ABORTED), 0
            reason = f"stopped: version {release.candidate_version} was deleted during the release; nothing changed"
        else:
            move_alias(
                session,
                model,
                release.alias,
                candidate,
                kind="release",
                reason=f"release {release.id}: {reason}",
                actor=actor,
            )
    release.status, release.reason, release.updated_at = target.value, reason, utcnow()
    if weight is not None:
        release.candidate_weight = weight
    if step_index is not None:
        release.step_index = step_index
    if target not in ACTIVE_RELEASE_STATUSES:
        release.finished_at = release.updated_at
    decision = ReleaseDecision(
        release_id=release.id,
        key=key,
        kind=kind,
        step_index=release.step_index,
        status=release.status,
        candidate_weight=release.candidate_weight,
        reason=reason,
        figures=figures,
        actor_user_id=actor.user_id,
        actor_key_id=actor.api_key_id,
    )
    session.add(decision)
    _audit(session, model, release, f"{kind}: {release.status}, candidate weight {release.candidate_weight}%", actor)
    try:
        session.commit()
    except IntegrityError:  # the same decision made concurrently: the first one counts
        session.rollback()
        return session.scalars(
            select(ReleaseDecision).where(ReleaseDecision.release_id == release_id, ReleaseDecision.key == key)
        ).one()
    return decision


def _still_allowed(session: Session, release_id: str, allowed: frozenset[ReleaseStatus]) -> bool:
    session.expire_all()
    return ReleaseStatus(session.get_one(Release, release_id).status) in allowed


def _decision(session: Session, release_id: str, key: str) -> ReleaseDecision | None:
    return session.scalar(
        select(ReleaseDecision).where(ReleaseDecision.release_id == release_id, ReleaseDecision.key == key)
    )


def _audit(session: Session, model: RegisteredModel, release: Release, what: str, actor: Actor) -> None:
    session.add(
        AuditEntry(
            org_id=model.org_id,
            actor_user_id=actor.user_id,
            actor_key_id=actor.api_key_id,
            action=f"release {release.id} of {model.name}@{release.alias}: {what}"[:200],
            resource_type="release",
            resource_id=release.id,
            status_code=200,
        )
    )


def decided_at(decision: ReleaseDecision) -> datetime:
    return as_utc(decision.at)


# ---------------------------------------------------------------- controls


async def control(
    session: Session, temporal: Temporal, release: Release, action: str, actor: Actor, reason: str | None = None
) -> ReleaseResult:
    """Send promote, pause, resume or abort to the release's workflow, whose validator accepts it (the status it leads
    to) or refuses it from the release's own state (409). Promoting skips the remaining analyses: it needs
    models:force, as forcing a promotion past the gate does."""
    if action not in ACTIONS:
        raise Invalid(f"action: one of {', '.join(ACTIONS)}, got {action!r}")
    if action == "promote" and Scope.MODELS_FORCE not in actor.scopes:
        raise Forbidden("promoting a release past its remaining steps requires models:force (owners and admins)")
    allowed, _ = RELEASE_CONTROLS[action]
    if ReleaseStatus(release.status) not in allowed:
        raise Conflict(f"cannot {action} release {release.id}: it is {release.status}")
    handle: WorkflowHandle = (await temporal()).get_workflow_handle_for(
        ReleaseWorkflow.run, release_workflow_id(release.id)
    )
    command = ReleaseControl(action=action, actor_user_id=actor.user_id, actor_key_id=actor.api_key_id, reason=reason)
    update = {
        "promote": ReleaseWorkflow.promote,
        "pause": ReleaseWorkflow.pause,
        "resume": ReleaseWorkflow.resume,
        "abort": ReleaseWorkflow.abort,
    }[action]
    waited = 0.0
    while True:
        try:
            result: ReleaseResult = await handle.execute_update(update, command, rpc_timeout=CONTROL_TIMEOUT)
            break
        except WorkflowUpdateFailedError as exc:
            if waited < CATCH_UP_SECONDS and _still_allowed(session, release.id, allowed):
                await asyncio.sleep(CATCH_UP_INTERVAL)
                waited += CATCH_UP_INTERVAL
                continue
            raise Conflict(getattr(exc.cause, "message", None) or str(exc)) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in exc.message:
                raise Conflict(f"release {release.id} has no running workflow") from exc
            raise Unavailable(f"the release did not answer (are the control workers running?): {exc.message}") from exc
    session.expire_all()
    return result
