"""The scenario suites' activities: a model answers every case of a suite run (the way serving answers: the
conversation's earlier turns, the case's passages, and the top-k passages of its knowledge base), each answer is
judged (`suites.verdicts`), and the answers and verdicts are stored with the run. A release step's shadow
(`suites.shadow`) answers its real prompts that match blocking cases the same way, with both versions."""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path

from temporalio import activity

from activities.context import ActivityContext, Heartbeater, invalid_input
from core.errors import DomainError
from core.status import SuiteRunStatus
from db.models import KnowledgeBase, Organization, SuiteRun
from ml.release import CANDIDATE, CURRENT
from schemas.workflow_io import (
    FailSuiteRunInput,
    RunSuiteInput,
    RunSuiteResult,
    ShadowReleaseInput,
    ShadowReleaseResult,
)
from services import judges, releases
from services import suites as service
from storage.object_store import get_dir
from suites.cases import Case
from suites.shadow import shadow_cases, shadow_verdict
from suites.verdicts import Grader, judge_case


class SuiteActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="run_suite")
    def run_suite(self, inp: RunSuiteInput) -> RunSuiteResult:
        """Answer each case one at a time (so its latency is its own), judge it, and store every answer and verdict."""
        with self.ctx.sessions() as session:
            run = session.get(SuiteRun, inp.run_id)
            if run is None:
                raise invalid_input(f"suite run {inp.run_id} not found")
            if run.status != SuiteRunStatus.RUNNING:  # a retried attempt after the results were stored
                return RunSuiteResult(run.passed, run.failed, run.total)
            try:
                target = service.run_target(session, inp.run_id)
            except DomainError as exc:  # its model version was deleted since: retrying cannot help
                raise invalid_input(exc.message) from exc
            indexes = self._indexes(session, run.org_id, target.cases)
            grader = self._grader(session, run.org_id) if any(c.judge for c in target.cases) else None
        with Heartbeater() as heartbeat:
            results = self._answer(target, target.cases, indexes, grader, heartbeat)
        with self.ctx.sessions() as session:
            run = service.record_results(session, inp.run_id, results)
            return RunSuiteResult(run.passed, run.failed, run.total)

    @activity.defn(name="shadow_release_suites")
    def shadow_release_suites(self, inp: ShadowReleaseInput) -> ShadowReleaseResult:
        """The step's real prompts that ask what a case of a blocking suite asks, asked of both versions and judged by
        that case's assertions (`suites.shadow`); nothing is stored but the verdict the workflow records."""
        from knowledge.embeddings import embed

        with self.ctx.sessions() as session:
            plan = releases.shadow_plan(session, inp.release_id, datetime.fromisoformat(inp.since))
            asked = shadow_cases(plan.prompts, plan.cases, embed, plan.limit)
            indexes = self._indexes(session, plan.org_id, [c.case for c in asked])
            grader = self._grader(session, plan.org_id) if any(c.case.judge for c in asked) else None
        verdicts: dict[str, dict[str, bool]] = {}
        with Heartbeater() as heartbeat:
            for arm, target in plan.versions.items():
                results = self._answer(target, [c.case for c in asked], indexes, grader, heartbeat) if asked else []
                verdicts[arm] = {c.id: r["passed"] for c, r in zip(asked, results, strict=True)}
        passed, reason, figures = shadow_verdict(asked, verdicts[CURRENT], verdicts[CANDIDATE], plan.max_broken)
        return ShadowReleaseResult(passed=passed, reason=reason, figures=figures)

    def _answer(
        self,
        target: service.RunTarget,
        cases: list[Case],
        indexes: dict[str, str],
        grader: Grader | None,
        heartbeat: Heartbeater,
    ) -> list[dict]:
        """Each case answered by the target's model, as serving would ask it, and judged: its answer, latency, passages
        and verdict."""
        from ml.base_model import load_model_and_tokenizer, with_adapter
        from ml.evaluator import generate_answers
        from ml.precision import model_autocast

        results = []
        with tempfile.TemporaryDirectory() as tmp:
            heartbeat.update(stage=f"loading {target.base_model}")
            model, tokenizer = load_model_and_tokenizer(target.base_model, self.ctx.settings.model_cache_dir)
            if target.adapter_key is not None:
                model = with_adapter(
                    model, get_dir(self.ctx.store, target.adapter_key, Path(tmp) / "adapter"), merge=True
                )
            for done, case in enumerate(cases):
                passages = case.context + self._retrieved(
                    indexes, case, target.retrieval_top_k, target.context_statements
                )
                started = time.perf_counter()
                with model_autocast(model, self.ctx.settings.inference_precision):  # as serving computes
                    answer = generate_answers(
                        model,
                        tokenizer,
                        [case.question],
                        1,
                        self.ctx.settings.max_new_tokens,
                        None,
                        [passages],
                        [case.history],
                    )[0]
                latency_ms = round((time.perf_counter() - started) * 1000)
                verdict = judge_case(case, answer, latency_ms, grader)
                results.append(
                    {"case_id": case.id, "answer": answer, "latency_ms": latency_ms, "passages": passages}
                    | verdict.to_json()
                )
                heartbeat.update(stage=f"answered {done + 1}/{len(cases)}")
        return results

    def _grader(self, session, org_id: str) -> Grader | None:
        """The organization's judge as a grader (None without one). An outage of the judge is raised, so the activity
        retries; a refusal, or a judge that cannot be used, fails the `judge` assertions with its reason."""
        from teacher import TeacherError
        from teacher.judge import Judge

        try:
            endpoint = judges.judge_endpoint(self.ctx.settings, session.get_one(Organization, org_id))
        except DomainError as exc:
            reason = exc.message
            return lambda rubric, question, answer: (False, reason)
        if endpoint is None:
            return None
        judge = Judge.at(*endpoint)

        def grade(rubric: str, question: str, answer: str) -> tuple[bool, str]:
            try:
                graded = judge.grade(rubric, question, answer)
            except TeacherError as exc:
                if exc.retryable:
                    raise
                return False, str(exc)
            return graded.passed, graded.detail

        return grade

    def _indexes(self, session, org_id: str, cases: list[Case]) -> dict[str, str]:
        """Each knowledge base the cases name, to its index's key; a missing or unbuilt one fails the run (no retry)."""
        indexes = {}
        for kb_id in {case.knowledge_base_id for case in cases if case.knowledge_base_id}:
            kb = session.get(KnowledgeBase, kb_id)
            if kb is None or kb.org_id != org_id:
                raise invalid_input(f"knowledge base {kb_id} not found")
            if not kb.index_key:
                raise invalid_input(f"knowledge base {kb_id} has no index yet")
            indexes[kb_id] = kb.index_key
        return indexes

    def _retrieved(self, indexes: dict[str, str], case: Case, top_k: int, statements: int | None) -> list[str]:
        """The case's top-k passages from its knowledge base, cut to `statements` as the version was trained."""
        if not case.knowledge_base_id:
            return []
        from knowledge.embeddings import embed
        from ml.examples import Example
        from ml.focused_context import focus_passages
        from ml.retrieval_context import retrieve

        index = self.ctx.knowledge_indexes.get(indexes[case.knowledge_base_id])
        (hits,) = retrieve(index, [Example(case.question, "")], embed, top_k)
        passages = [hit.chunk.text for hit in hits]
        return focus_passages([case.question], [passages], embed, statements)[0] if statements else passages

    @activity.defn(name="fail_suite_run")
    def fail_suite_run(self, inp: FailSuiteRunInput) -> None:
        with self.ctx.sessions() as session:
            service.fail_run(session, inp.run_id, inp.error)
