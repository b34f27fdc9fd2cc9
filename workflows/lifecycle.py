"""The machinery every workflow shares, so a new workflow (ingestion, generation, a promotion gate) only orchestrates:

- a status that moves only as a transition table allows, each move written to a database projection
  (`record`) before it is taken;
- phases: one activity each, with its own task queue, timeouts and retry policy (`PhaseOptions`);
- pause and resume: a pause cancels the running phase at its next safe point (training checkpoints
  first), the subject is SUSPENDED, and resume re-runs that phase, which picks up from its checkpoint;
  the commands are validated here (`check_pause`, `check_resume`) so a workflow's update validators
  answer from the workflow's own state;
- the compensation stack: what a step leaves behind registers its undo; on failure or cancellation the
  undos run in reverse order and the subject ends in its final status;
- debouncing (`wait_until_quiet`): a burst of changes is acted on once.

Everything here runs inside workflow code: deterministic, no I/O but the activities it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

if TYPE_CHECKING:
    from schemas.workflow_io import ActivityTimeouts

Status = TypeVar("Status")
Checked = TypeVar("Checked", contravariant=True)


class TransitionCheck(Protocol[Checked]):
    """Raises if `current -> target` is not allowed (a status table's `check_transition`)."""

    def __call__(self, current: Checked, target: Checked, *, suspended_from: Checked | None = None) -> Any: ...


Projection = Callable[..., Awaitable[None]]  # (status, suspended_from, **fields) -> writes the database projection
Undo = Callable[[Any, "str | None"], Awaitable[None]]  # (final status, error) -> undoes one step


@dataclass(frozen=True)
class PhaseOptions:
    """Where and how long one phase's activity may run, and how it is retried."""

    task_queue: str
    start_to_close: timedelta
    retry: RetryPolicy
    heartbeat: timedelta | None = None

    @classmethod
    def on_queue(cls, task_queue: str, seconds: float, timeouts: ActivityTimeouts) -> PhaseOptions:
        """`seconds` to run on `task_queue`, heartbeating and retried as `timeouts` say."""
        return cls(
            task_queue=task_queue,
            start_to_close=timedelta(seconds=seconds),
            retry=RetryPolicy(
                initial_interval=timedelta(seconds=timeouts.retry_initial_seconds),
                maximum_attempts=timeouts.max_attempts,
            ),
            heartbeat=timedelta(seconds=timeouts.heartbeat_seconds),
        )

    def activity_options(self) -> dict[str, Any]:
        """These options as `workflow.execute_activity` takes them."""
        return {
            "task_queue": self.task_queue,
            "start_to_close_timeout": self.start_to_close,
            "heartbeat_timeout": self.heartbeat,
            "retry_policy": self.retry,
        }


class Lifecycle(Generic[Status]):
    """A workflow subject's status, pause/resume state, phases and compensation stack."""

    def __init__(
        self, status: Status, check: TransitionCheck[Status], record: Projection, suspended: Status | None = None
    ):
        self.status = status
        self.suspended_from: Status | None = None
        self.pause_requested = False
        self.resume_requested = False
        self._check = check
        self._record = record
        self._suspended = suspended
        self._undos: list[tuple[str, Undo]] = []

    # ------------------------------------------------------------ the status and its projection

    async def record(self, status: Status, **fields: Any) -> None:
        """Write the projection of a move (or of a phase event within a status), then take it."""
        if status != self.status:
            self._check(self.status, status, suspended_from=self.suspended_from)
        await self._record(status, **fields)
        self.status = status

    # ------------------------------------------------------------ pause and resume

    def check_pause(self, subject: str) -> None:
        """Raise (rejecting the command) unless the running phase can be paused now."""
        if self._suspended is None or not self._allowed(self._suspended):
            raise ApplicationError(
                f"cannot pause {subject}: it is {self.status}", type="IllegalTransition", non_retryable=True
            )

    def check_resume(self, subject: str) -> None:
        if self.status != self._suspended:
            raise ApplicationError(
                f"cannot resume {subject}: it is {self.status}, not {self._suspended}",
                type="IllegalTransition",
                non_retryable=True,
            )

    def check_cancel(self, subject: str, cancelled: Status) -> None:
        if not self._allowed(cancelled):
            raise ApplicationError(
                f"cannot cancel {subject}: it is {self.status}", type="IllegalTransition", non_retryable=True
            )

    def request_pause(self) -> None:
        self.pause_requested, self.resume_requested = True, False

    def request_resume(self) -> None:
        self.resume_requested, self.pause_requested = True, False

    def _allowed(self, target: Status) -> bool:
        try:
            self._check(self.status, target, suspended_from=self.suspended_from)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------ phases

    async def run_phase(
        self, status: Status, activity: Callable, arg: Any, options: PhaseOptions, **started: Any
    ) -> Any:
        """Run one phase's activity in `status`; a pause cancels it (training checkpoints first), suspends, and re-runs
        it on resume."""
        await self.record(status, phase_event="started", phase=status, **started)
        while True:
            if self.pause_requested:
                await self._suspend(status)
                continue
            handle = workflow.start_activity(
                activity,
                arg,
                task_queue=options.task_queue,
                start_to_close_timeout=options.start_to_close,
                heartbeat_timeout=options.heartbeat,
                retry_policy=options.retry,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            pause = asyncio.ensure_future(workflow.wait_condition(lambda: self.pause_requested))
            try:
                await workflow.wait([handle, pause], return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                # cancelled: let the activity finish its own cancellation before compensation runs
                pause.cancel()
                handle.cancel()
                with contextlib.suppress(BaseException):
                    await handle
                raise
            if handle.done():
                pause.cancel()
                return handle.result()
            handle.cancel()
            try:
                return await handle  # it finished before the cancellation reached it
            except ActivityError as err:
                if not isinstance(err.cause, CancelledError):
                    raise
            await self._suspend(status)

    async def _suspend(self, phase: Status) -> None:
        if self._suspended is None:  # check_pause refuses a pause of a subject that has no suspended status
            raise ApplicationError("this workflow cannot be paused", type="IllegalTransition", non_retryable=True)
        await self.record(self._suspended, suspended_from=phase)
        self.suspended_from = phase
        await workflow.wait_condition(lambda: self.resume_requested)
        self.resume_requested = False
        self.pause_requested = False
        await self.record(phase)
        self.suspended_from = None

    # ------------------------------------------------------------ compensation

    def push_undo(self, name: str, undo: Undo) -> None:
        """Register how to undo a step, should the run fail or be cancelled before it is discarded."""
        self._undos.append((name, undo))

    def discard_undo(self, name: str) -> None:
        """The step is final: it is kept whatever happens next."""
        self._undos = [(n, u) for n, u in self._undos if n != name]

    async def compensate(self, final: Status, error: str | None) -> None:
        """Run the registered undos in reverse order, then end in `final`."""
        self._check(self.status, final, suspended_from=self.suspended_from)
        while self._undos:
            _, undo = self._undos.pop()
            await undo(final, error)
        self.status = final


async def wait_until_quiet(changes: Callable[[], int], seconds: float) -> None:
    """Return once `changes()` (a count of changes) has not grown for `seconds`: a burst of changes is taken as one."""
    while seconds > 0 and await _grows_within(changes, seconds):
        pass


async def _grows_within(changes: Callable[[], int], seconds: float) -> bool:
    seen = changes()
    try:
        await workflow.wait_condition(lambda: changes() > seen, timeout=timedelta(seconds=seconds))
    except TimeoutError:
        return False
    return True


def failure_message(err: ActivityError) -> str:
    """The innermost cause of an activity failure, named after the activity."""
    cause = err.cause
    while isinstance(cause, ActivityError):
        cause = cause.cause
    return f"{err.activity_type} failed: {cause.message if isinstance(cause, FailureError) else err.message}"
