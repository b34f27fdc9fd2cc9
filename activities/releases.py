"""A release's activities, thin over `services.releases`: make one keyed decision (a traffic change, an analysis's
outcome, a pause, the alias move, ...), analyse a step's arms from the question-answering history, and decide on the
blocking suites' runs against the candidate."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from activities.context import ActivityContext
from core.status import ReleaseStatus
from db.models import ReleaseDecision
from schemas.workflow_io import (
    AnalyseReleaseInput,
    AnalyseReleaseResult,
    JudgeReleaseSuitesInput,
    ReleaseDecisionInput,
    ReleaseDecisionResult,
)
from services import releases
from services.registry import Actor


class ReleaseActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="decide_release")
    def decide_release(self, inp: ReleaseDecisionInput) -> ReleaseDecisionResult:
        """Make the decision once: a retried attempt (or a replayed workflow) finds it made and changes nothing."""
        actor = Actor(inp.actor_user_id, inp.actor_key_id) if inp.actor_user_id or inp.actor_key_id else None
        with self.ctx.sessions() as session:
            decision = releases.decide(
                session,
                inp.release_id,
                inp.key,
                inp.kind,
                inp.reason,
                status=ReleaseStatus(inp.status) if inp.status else None,
                weight=inp.weight,
                step_index=inp.step_index,
                figures=inp.figures,
                actor=actor,
                guard_alias=inp.guard_alias,
                promote=inp.promote,
            )
            return decided(decision)

    @activity.defn(name="judge_release_suites")
    def judge_release_suites(self, inp: JudgeReleaseSuitesInput) -> ReleaseDecisionResult:
        """The blocking suites' verdict on the candidate, decided once (a failing case rolls the release back)."""
        with self.ctx.sessions() as session:
            return decided(releases.judge_suites(session, inp.release_id))

    @activity.defn(name="analyse_release")
    def analyse_release(self, inp: AnalyseReleaseInput) -> AnalyseReleaseResult:
        """Each arm's figures since the step began (answers to known questions judged by their checks), and whether
        there are enough of them and the candidate passes."""
        with self.ctx.sessions() as session:
            analysis = releases.analyse(
                session, inp.release_id, inp.step_index, datetime.fromisoformat(inp.since), self.ctx.store
            )
        return AnalyseReleaseResult(
            enough=analysis.enough,
            passed=analysis.passed,
            reason=analysis.reason,
            figures=analysis.figures,
            alias_moved=analysis.alias_moved,
        )


def decided(decision: ReleaseDecision) -> ReleaseDecisionResult:
    return ReleaseDecisionResult(
        status=decision.status,
        candidate_weight=decision.candidate_weight,
        reason=decision.reason,
        at=releases.decided_at(decision).isoformat(),
    )
