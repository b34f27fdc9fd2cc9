"""FineTuningWorkflow: the task state machine, a loop of iterations (optimize -> train -> evaluate).

A continuous task runs several iterations inside one workflow run, then continues-as-new carrying a
small `LoopState` (the iteration to run next and a summary of the finished ones):

- one iteration adds a bounded number of events to a run's history: three phase activities, seven
  `record_progress` markers and the workflow tasks between them, about 25 events and some 10-20 KB
  (payloads are keys, scores and summaries, never data; activity retries and heartbeats add no
  events). Only pause/resume signals add more, a handful of events per pause;
- a run continues-as-new once it has completed `FineTuningInput.iterations_per_run` iterations (10 by
  default): about 250 events and a few hundred KB per run, far below Temporal's hard limits (51,200
  events or 50 MB per history) and below the point where the server starts suggesting continue-as-new
  (4,096 events or 4 MB by default);
- the server's suggestion (`workflow.info().is_continue_as_new_suggested()`) is honoured as well, at
  the next iteration boundary, so a run made long by many pauses still hands over in time.

So however many iterations a task runs, no single history grows without bound. Continuing-as-new after
every iteration kept each history smallest, but the server spaces rapid continue-as-new runs about a
second apart, which dominated the orchestration overhead of continuous tasks with quick phases.
Between two iterations the task is LOOPING whether or not the run continues as new; queries and signals
address the workflow id (= task id) and so always reach the current run.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from core.settings import TASK_QUEUE_BOOKKEEPING, TASK_QUEUE_EVALUATE, TASK_QUEUE_OPTIMIZE, TASK_QUEUE_TRAIN
    from core.status import TaskMode, TaskStatus, check_transition
    from schemas.workflow_io import (
        CompensateInput, EvaluateInput, EvaluateResult, FineTuningInput, FineTuningResult, IterationRecord,
        LoopState, OptimizeInput, OptimizeResult, RecordProgressInput, ReportInput, ReportResult, TrainInput, TrainResult,
    )

BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10)


@workflow.defn(name="FineTuningWorkflow")
class FineTuningWorkflow:
    def __init__(self) -> None:
        self._status = TaskStatus.PENDING
        self._suspended_from: TaskStatus | None = None
        self._iteration = 0
        self._max_iterations = 1
        self._history: list[IterationRecord] = []
        self._baseline_test_score: float | None = None
        self._pause_requested = False
        self._resume_requested = False
        self._error: str | None = None

    # ------------------------------------------------------------ signals and queries

    @workflow.signal
    def pause(self) -> None:
        """Suspend at the next safe point: the running activity checkpoints (training) and stops."""
        self._pause_requested = True
        self._resume_requested = False

    @workflow.signal
    def resume(self) -> None:
        self._resume_requested = True
        self._pause_requested = False

    @workflow.query
    def progress(self) -> dict[str, Any]:
        return {
            "status": self._status.value,
            "phase": self._status.value if self._status != TaskStatus.SUSPENDED else None,
            "suspended_from": self._suspended_from.value if self._suspended_from else None,
            "iteration": self._iteration,
            "max_iterations": self._max_iterations,
            "pause_requested": self._pause_requested,
            "baseline_test_score": self._baseline_test_score,
            "scores": [{"iteration": r.iteration, "test": r.test_score, "feedback": r.feedback_score, "grade": r.grade} for r in self._history],
            "error": self._error,
        }

    # ------------------------------------------------------------ the run

    @workflow.run
    async def run(self, task: FineTuningInput) -> FineTuningResult:
        state = task.state
        self._iteration = state.iteration
        self._max_iterations = task.max_iterations if task.mode == TaskMode.CONTINUOUS else 1
        self._history = list(state.history)
        self._baseline_test_score = state.baseline_test_score
        self._pause_requested = state.pause_requested
        if state.iteration > 1:
            self._status = TaskStatus.LOOPING  # the previous run ended in LOOPING and continued as new
        try:
            return await self._run_loop(task)
        except (asyncio.CancelledError, CancelledError):
            await self._compensate(task, TaskStatus.CANCELLED, None)
            raise
        except ActivityError as err:
            message = _failure_message(err)
            self._error = message
            await self._compensate(task, TaskStatus.FAILED, message)
            raise ApplicationError(message, type="FineTuningFailed", non_retryable=True) from err

    async def _run_loop(self, task: FineTuningInput) -> FineTuningResult:
        """Run iterations until a stop reason; continue-as-new between two iterations when this run's history is long enough."""
        state = task.state
        iterations_per_run = max(1, task.iterations_per_run)
        completed_in_run = 0
        while True:
            evaluated, following = await self._run_iteration(task, state)
            completed_in_run += 1
            stop_reason = self._stop_reason(task, state.iteration, evaluated)
            if stop_reason is not None:
                break
            await self._record(TaskStatus.LOOPING)
            state = following
            if completed_in_run >= iterations_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(dataclasses.replace(task, state=dataclasses.replace(state, pause_requested=self._pause_requested)))
            self._iteration = state.iteration

        report: ReportResult = await workflow.execute_activity(
            "build_report", ReportInput(task.task_id, task.mode, task.model_name, stop_reason, evaluated.baseline_key, self._history),
            result_type=ReportResult, task_queue=TASK_QUEUE_BOOKKEEPING, start_to_close_timeout=timedelta(minutes=5),
            retry_policy=_phase_retry(task),
        )
        await self._record(TaskStatus.COMPLETED, report_path=report.report_key)
        return FineTuningResult(task.task_id, TaskStatus.COMPLETED.value, self._history, report.report_key, stop_reason)

    async def _run_iteration(self, task: FineTuningInput, state: LoopState) -> tuple[EvaluateResult, LoopState]:
        """One iteration: optimize -> train -> evaluate; returns the evaluation and the state the next iteration starts from."""
        timeouts, n = task.timeouts, state.iteration
        previous = state.history[-1] if state.history else None
        retry = _phase_retry(task)

        optimized: OptimizeResult = await self._phase(
            TaskStatus.OPTIMIZING, "optimize_dataset",
            OptimizeInput(task.task_id, task.owner, n, task.dataset_id, state.splits_key,
                          previous.evaluation_key if previous else None, task.targeting),
            OptimizeResult, TASK_QUEUE_OPTIMIZE, timeouts.optimize_seconds, None, retry,
            input_dataset_id=previous.dataset_id if previous else task.dataset_id,
        )
        await self._record(TaskStatus.OPTIMIZING, phase_event="finished", phase=TaskStatus.OPTIMIZING, output_dataset_id=optimized.dataset_id, metrics=optimized.log)

        trained: TrainResult = await self._phase(
            TaskStatus.TRAINING, "train_adapter",
            TrainInput(task.task_id, n, task.model_name, optimized.train_key, task.hyperparameters, previous.adapter_key if previous else None,
                       owner=task.owner),
            TrainResult, TASK_QUEUE_TRAIN, timeouts.train_seconds, timeouts.heartbeat_seconds, retry,
            input_dataset_id=optimized.dataset_id,
        )
        await self._record(TaskStatus.TRAINING, phase_event="finished", phase=TaskStatus.TRAINING, model_path=trained.adapter_key,
                           metrics={"steps": trained.steps, "resumed_from_step": trained.resumed_from_step, "final_loss": trained.final_loss,
                                    "tokens_per_second": trained.tokens_per_second, "seconds": trained.seconds})

        evaluated: EvaluateResult = await self._phase(
            TaskStatus.EVALUATING, "evaluate_adapter",
            EvaluateInput(task.task_id, n, task.model_name, trained.adapter_key, optimized.splits_key, optimized.train_key,
                          state.baseline_key, previous.evaluation_key if previous else None, owner=task.owner),
            EvaluateResult, TASK_QUEUE_EVALUATE, timeouts.evaluate_seconds, timeouts.heartbeat_seconds, retry,
            input_dataset_id=optimized.dataset_id,
        )
        self._baseline_test_score = evaluated.baseline_test_score
        record = IterationRecord(n, optimized.dataset_id, trained.adapter_key, evaluated.evaluation_key, evaluated.test_score,
                                 evaluated.feedback_score, evaluated.grade, trained.steps, trained.resumed_from_step)
        self._history.append(record)
        await self._record(TaskStatus.EVALUATING, phase_event="finished", phase=TaskStatus.EVALUATING, model_path=trained.adapter_key,
                           evaluation_path=evaluated.evaluation_key, score=evaluated.test_score, baseline_score=evaluated.baseline_test_score,
                           output_dataset_id=optimized.dataset_id,
                           metrics={"test": evaluated.test_score, "feedback": evaluated.feedback_score, "grade": evaluated.grade, "bad_cases": evaluated.bad_cases})

        return evaluated, LoopState(n + 1, optimized.splits_key, evaluated.baseline_key, evaluated.baseline_test_score, list(self._history))

    def _stop_reason(self, task: FineTuningInput, iteration: int, evaluated: EvaluateResult) -> str | None:
        if task.mode != TaskMode.CONTINUOUS:
            return "standard task"
        if task.performance_threshold is not None and evaluated.test_score >= task.performance_threshold:
            return f"test score {evaluated.test_score:.4f} reached the threshold {task.performance_threshold}"
        if iteration >= task.max_iterations:
            return f"reached max_iterations={task.max_iterations}"
        return None

    # ------------------------------------------------------------ phases, pause and resume

    async def _phase(self, status: TaskStatus, activity: str, arg: Any, result_type: type, task_queue: str,
                     timeout_seconds: int, heartbeat_seconds: int | None, retry: RetryPolicy, input_dataset_id: str | None) -> Any:
        """Run one phase's activity; a pause cancels it (training checkpoints first), suspends, and re-runs it on resume."""
        await self._record(status, phase_event="started", phase=status, input_dataset_id=input_dataset_id)
        while True:
            if self._pause_requested:
                await self._suspend(status)
                continue
            handle = workflow.start_activity(
                activity, arg, result_type=result_type, task_queue=task_queue,
                start_to_close_timeout=timedelta(seconds=timeout_seconds),
                heartbeat_timeout=timedelta(seconds=heartbeat_seconds) if heartbeat_seconds else None,
                retry_policy=retry, cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            pause = asyncio.ensure_future(workflow.wait_condition(lambda: self._pause_requested))
            try:
                await workflow.wait([handle, pause], return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                # cancelled: let the activity finish its own cancellation before compensation runs
                pause.cancel()
                handle.cancel()
                try:
                    await handle
                except BaseException:
                    pass
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

    async def _suspend(self, phase: TaskStatus) -> None:
        await self._record(TaskStatus.SUSPENDED, suspended_from=phase)
        self._suspended_from = phase
        await workflow.wait_condition(lambda: self._resume_requested)
        self._resume_requested = False
        self._pause_requested = False
        await self._record(phase)
        self._suspended_from = None

    # ------------------------------------------------------------ projection and compensation

    async def _record(self, status: TaskStatus, **fields: Any) -> None:
        """Write the database projection of a transition (or of a phase event within a status), then take it."""
        if status != self._status:
            check_transition(self._status, status, suspended_from=self._suspended_from)
        # a local activity: a short, idempotent database write needs no task-queue round trip
        await workflow.execute_local_activity(
            "record_progress", RecordProgressInput(workflow.info().workflow_id, status.value, self._iteration, **fields),
            start_to_close_timeout=timedelta(seconds=30), retry_policy=BOOKKEEPING_RETRY,
        )
        self._status = status

    async def _compensate(self, task: FineTuningInput, final: TaskStatus, error: str | None) -> None:
        """Delete the unfinished iteration's artifacts, mark its executions, end the task in `final`."""
        finished = any(r.iteration == self._iteration for r in self._history)
        check_transition(self._status, final, suspended_from=self._suspended_from)
        await workflow.execute_activity(
            "compensate_iteration", CompensateInput(task.task_id, None if finished else self._iteration, final.value, error),
            task_queue=TASK_QUEUE_BOOKKEEPING, start_to_close_timeout=timedelta(minutes=2), retry_policy=BOOKKEEPING_RETRY,
        )
        self._status = final


def _phase_retry(task: FineTuningInput) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(seconds=task.timeouts.retry_initial_seconds), maximum_attempts=task.timeouts.max_attempts)


def _failure_message(err: ActivityError) -> str:
    cause = err.cause
    while cause is not None and isinstance(cause, ActivityError):
        cause = cause.cause
    return f"{err.activity_type} failed: {cause.message if cause is not None else err.message}"
