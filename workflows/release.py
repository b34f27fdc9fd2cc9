"""ReleaseWorkflow (id `release-<release id>`, on the control queue): move an alias from its current version to a
candidate in weighted steps. First, the blocking suites the alias requires are answered by the candidate (evaluate
pool): a failing case rolls the release back before any traffic. Then, for each step: set the candidate's weight (a
keyed decision: once, however often it is retried or replayed), wait the bake time and until every arm that gets
traffic has its minimum number of requests, then analyse the arms from the history since the step began, and, where
the alias requires blocking suites, ask the step's real prompts that match their cases of both versions in the shadow
(evaluate pool, `suites.shadow`):

- too little data after the step's longest wait: PAUSED with the reason (resume restarts the step);
- the candidate failed: ROLLED_BACK (candidate weight 0, the alias unchanged);
- passed: the next step, or after the last one the alias moves to the candidate (PROMOTED, once).

Promote (skip to the end), pause, resume and abort are updates whose validators answer from the release's state,
including the commands accepted and not yet applied; each is applied by the main loop at its next wait, and the update
returns the release as it left it. Every decision goes through `decide_release`, which also stops the release when the
alias moved under it."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.releases import ReleaseActivities
    from activities.suites import SuiteActivities
    from core.settings import TASK_QUEUE_BOOKKEEPING
    from core.status import ACTIVE_RELEASE_STATUSES, RELEASE_CONTROLS, ReleaseStatus
    from schemas.workflow_io import (
        AnalyseReleaseInput,
        AnalyseReleaseResult,
        FailSuiteRunInput,
        JudgeReleaseSuitesInput,
        ReleaseControl,
        ReleaseDecisionInput,
        ReleaseDecisionResult,
        ReleaseInput,
        ReleaseResult,
        RunSuiteInput,
        ShadowReleaseInput,
        ShadowReleaseResult,
    )
    from workflows.lifecycle import failure_message
    from workflows.suite_run import evaluating

RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))

S = ReleaseStatus
ALLOWED_FROM = {action: allowed for action, (allowed, _) in RELEASE_CONTROLS.items()}
AFTER = {action: after for action, (_, after) in RELEASE_CONTROLS.items()}


@workflow.defn(name="ReleaseWorkflow")
class ReleaseWorkflow:
    def __init__(self) -> None:
        self._status = ReleaseStatus.PENDING
        self._reason = ""
        self._release_id = ""
        self._commands: list[ReleaseControl] = []  # accepted, not yet applied
        self._accepted = 0
        self._applied = 0
        self._pauses = 0  # how many pauses so far: each pause and resume decision is keyed by its number

    @workflow.run
    async def run(self, inp: ReleaseInput) -> ReleaseResult:
        self._release_id = inp.release_id
        await self._decide(
            ReleaseDecisionInput(
                inp.release_id, "start", "start", "started", status=S.RUNNING.value, step_index=0, guard_alias=True
            )
        )
        if inp.suite_run_ids and self._active():
            await self._run_suites(inp)
        step = 0
        while self._active() and step < len(inp.steps):
            weight = inp.steps[step]
            decided = await self._decide(
                ReleaseDecisionInput(
                    inp.release_id,
                    f"traffic-{step}",
                    "traffic",
                    f"step {step + 1} of {len(inp.steps)}: the candidate gets {weight}% of the alias's traffic",
                    weight=weight,
                    step_index=step,
                    guard_alias=True,
                )
            )
            if not self._active() or not await self._run_step(inp, step, decided.at):
                break
            step += 1
        if self._active():  # every step passed
            await self._promote(f"every step of {inp.steps} passed its analysis")
        self._applied = self._accepted  # a command accepted just before the release ended has nothing left to do
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state()

    async def _run_suites(self, inp: ReleaseInput) -> None:
        """The blocking suites the alias requires, answered by the candidate before it gets any traffic (evaluate
        pool, as the promotion gate runs them); a run that cannot answer is marked FAILED, which refuses too."""
        timeouts = inp.suite_timeouts
        for run_id in inp.suite_run_ids:
            try:
                await workflow.execute_activity_method(
                    SuiteActivities.run_suite,
                    RunSuiteInput(run_id=run_id),
                    **evaluating(timeouts),
                )
            except ActivityError as err:
                await workflow.execute_activity_method(
                    SuiteActivities.fail_suite_run,
                    FailSuiteRunInput(run_id=run_id, error=failure_message(err)),
                    task_queue=TASK_QUEUE_BOOKKEEPING,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RETRY,
                )
        judged: ReleaseDecisionResult = await workflow.execute_activity_method(
            ReleaseActivities.judge_release_suites,
            JudgeReleaseSuitesInput(inp.release_id),
            task_queue=TASK_QUEUE_BOOKKEEPING,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )
        self._status, self._reason = ReleaseStatus(judged.status), judged.reason

    async def _run_step(self, inp: ReleaseInput, step: int, since: str) -> bool:
        """Bake, wait for requests, analyse; True when the step passed (the release is still RUNNING)."""
        started = workflow.now()
        due = started + timedelta(seconds=inp.bake_seconds)  # the next analysis
        while True:
            now = workflow.now()
            if now < due:
                await self._wait(due - now)
            if self._commands:
                resumed_at = await self._apply(self._commands.pop(0))
                if not self._active():
                    return False
                if resumed_at is not None:  # paused and resumed: the step starts again
                    started, since = workflow.now(), resumed_at
                    due = started + timedelta(seconds=inp.bake_seconds)
                continue
            if workflow.now() < due:
                continue
            analysis: AnalyseReleaseResult = await workflow.execute_activity_method(
                ReleaseActivities.analyse_release,
                AnalyseReleaseInput(inp.release_id, step, since),
                task_queue=TASK_QUEUE_BOOKKEEPING,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
            if analysis.enough or analysis.alias_moved:  # (a decision on a moved alias stops the release)
                failed = analysis.enough and not analysis.passed
                reason, figures = analysis.reason, analysis.figures
                if (
                    analysis.enough
                    and analysis.passed
                    and inp.suite_run_ids
                    and workflow.patched("release-shadow-suites")
                ):
                    shadow = await self._shadow(inp, step, since)
                    failed = not shadow.passed
                    reason = f"{reason}; {shadow.reason}" if shadow.passed else f"the candidate failed: {shadow.reason}"
                    figures = {**figures, "shadow": shadow.figures}
                await self._decide(
                    ReleaseDecisionInput(
                        inp.release_id,
                        "rollback" if failed else f"analysis-{step}",
                        "rollback" if failed else "analysis",
                        f"step {step + 1}: {reason}",
                        status=S.ROLLED_BACK.value if failed else None,
                        weight=0 if failed else None,
                        figures=figures,
                        guard_alias=True,
                    )
                )
                return self._active()
            if workflow.now() - started >= timedelta(seconds=inp.max_wait_seconds):
                self._pauses += 1
                await self._decide(
                    ReleaseDecisionInput(
                        inp.release_id,
                        f"pause-{self._pauses}",
                        "pause",
                        f"paused at step {step + 1} after {inp.max_wait_seconds:g} s: {analysis.reason}",
                        status=S.PAUSED.value,
                        figures=analysis.figures,
                    )
                )
                resumed_at = await self._paused()
                if resumed_at is None:
                    return False
                started, since = workflow.now(), resumed_at
                due = started + timedelta(seconds=inp.bake_seconds)
                continue
            # count again after the poll interval, or at the step's longest wait if that comes first
            longest = started + timedelta(seconds=inp.max_wait_seconds)
            due = min(workflow.now() + timedelta(seconds=inp.poll_seconds), max(longest, workflow.now()))

    async def _shadow(self, inp: ReleaseInput, step: int, since: str) -> ShadowReleaseResult:
        """The blocking suites on the step's real prompts, asked of both versions (evaluate pool, `suites.shadow`)."""
        timeouts = inp.suite_timeouts
        return await workflow.execute_activity_method(
            SuiteActivities.shadow_release_suites,
            ShadowReleaseInput(inp.release_id, step, since),
            **evaluating(timeouts),
        )

    async def _wait(self, timeout: timedelta) -> None:
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: bool(self._commands), timeout=timeout)

    async def _paused(self) -> str | None:
        """Wait for resume (the time it was applied), abort or promote (None)."""
        while True:
            await workflow.wait_condition(lambda: bool(self._commands))
            resumed_at = await self._apply(self._commands.pop(0))
            if not self._active():
                return None
            if resumed_at is not None:
                return resumed_at

    async def _apply(self, command: ReleaseControl) -> str | None:
        """Apply one accepted command; the time of the resume when it resumed the release."""
        resumed_at = None
        why = f": {command.reason}" if command.reason else ""
        if self._status not in ALLOWED_FROM[command.action]:
            pass  # the release moved on between acceptance and now (e.g. it was rolled back): nothing to do
        elif command.action == "promote":
            await self._promote(f"promoted by hand{why}", command)
        elif command.action == "abort":
            await self._decide(
                ReleaseDecisionInput(
                    self._release_id,
                    "abort",
                    "abort",
                    f"aborted{why}",
                    status=S.ABORTED.value,
                    weight=0,
                    actor_user_id=command.actor_user_id,
                    actor_key_id=command.actor_key_id,
                )
            )
        elif command.action == "pause":
            self._pauses += 1
            await self._decide(
                ReleaseDecisionInput(
                    self._release_id,
                    f"pause-{self._pauses}",
                    "pause",
                    f"paused{why}",
                    status=S.PAUSED.value,
                    actor_user_id=command.actor_user_id,
                    actor_key_id=command.actor_key_id,
                )
            )
            self._applied += 1  # the pause is applied: its update returns now, and the release waits for the next
            return await self._paused() if self._active() else None
        elif command.action == "resume":
            decided = await self._decide(
                ReleaseDecisionInput(
                    self._release_id,
                    f"resume-{self._pauses}",
                    "resume",
                    f"resumed{why}",
                    status=S.RUNNING.value,
                    guard_alias=True,
                    actor_user_id=command.actor_user_id,
                    actor_key_id=command.actor_key_id,
                )
            )
            resumed_at = decided.at
        self._applied += 1
        return resumed_at

    async def _promote(self, reason: str, command: ReleaseControl | None = None) -> None:
        await self._decide(
            ReleaseDecisionInput(
                self._release_id,
                "promote",
                "promote",
                reason,
                status=S.PROMOTED.value,
                weight=100,
                promote=True,
                actor_user_id=command.actor_user_id if command else None,
                actor_key_id=command.actor_key_id if command else None,
            )
        )

    async def _decide(self, decision: ReleaseDecisionInput) -> ReleaseDecisionResult:
        decided: ReleaseDecisionResult = await workflow.execute_activity_method(
            ReleaseActivities.decide_release,
            decision,
            task_queue=TASK_QUEUE_BOOKKEEPING,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )
        self._status, self._reason = ReleaseStatus(decided.status), decided.reason
        return decided

    def _active(self) -> bool:
        return self._status in ACTIVE_RELEASE_STATUSES

    def _expected(self) -> ReleaseStatus:
        """The status once every accepted command is applied: what the next command is validated against."""
        status = self._status
        for command in self._commands:
            status = AFTER[command.action]
        return status

    async def _command(self, command: ReleaseControl) -> ReleaseResult:
        self._commands.append(command)
        self._accepted += 1
        number = self._accepted
        await workflow.wait_condition(lambda: self._applied >= number)
        return self.state()

    def _validate(self, command: ReleaseControl, action: str) -> None:
        expected = self._expected()
        if expected not in ALLOWED_FROM[action]:
            raise ValueError(f"cannot {action} release {self._release_id}: it is {expected.value}")

    @workflow.update(name="promote")
    async def promote(self, command: ReleaseControl) -> ReleaseResult:
        return await self._command(
            ReleaseControl("promote", command.actor_user_id, command.actor_key_id, command.reason)
        )

    @promote.validator
    def _validate_promote(self, command: ReleaseControl) -> None:
        self._validate(command, "promote")

    @workflow.update(name="pause")
    async def pause(self, command: ReleaseControl) -> ReleaseResult:
        return await self._command(ReleaseControl("pause", command.actor_user_id, command.actor_key_id, command.reason))

    @pause.validator
    def _validate_pause(self, command: ReleaseControl) -> None:
        self._validate(command, "pause")

    @workflow.update(name="resume")
    async def resume(self, command: ReleaseControl) -> ReleaseResult:
        return await self._command(
            ReleaseControl("resume", command.actor_user_id, command.actor_key_id, command.reason)
        )

    @resume.validator
    def _validate_resume(self, command: ReleaseControl) -> None:
        self._validate(command, "resume")

    @workflow.update(name="abort")
    async def abort(self, command: ReleaseControl) -> ReleaseResult:
        return await self._command(ReleaseControl("abort", command.actor_user_id, command.actor_key_id, command.reason))

    @abort.validator
    def _validate_abort(self, command: ReleaseControl) -> None:
        self._validate(command, "abort")

    @workflow.query
    def state(self) -> ReleaseResult:
        return ReleaseResult(status=self._status.value, reason=self._reason)
