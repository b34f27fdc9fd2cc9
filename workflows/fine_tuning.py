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
    from activities.bookkeeping import BookkeepingActivities
    from activities.evaluate import EvaluateActivities
    from activities.optimize import OptimizeActivities
    from activities.registry import RegistryActivities
    from activities.train import TrainActivities
    from core.iteration_choice import choose_iteration
    from core.settings import TASK_QUEUE_BOOKKEEPING, TASK_QUEUE_EVALUATE, TASK_QUEUE_OPTIMIZE, TASK_QUEUE_TRAIN
    from core.status import TaskMode, TaskStatus, check_transition
    from schemas.workflow_io import (
        CompensateInput,
        EvaluateInput,
        EvaluateResult,
        FineTuningInput,
        FineTuningResult,
        IterationRecord,
        IterationScores,
        LoopState,
        OptimizeInput,
        OptimizeResult,
        RecordProgressInput,
        RegisterFinalAdapterInput,
        ReportInput,
        ReportResult,
        TaskProgress,
        TrainInput,
        TrainResult,
    )
    from workflows.lifecycle import Lifecycle, PhaseOptions, failure_message

BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10)


@workflow.defn(name="FineTuningWorkflow")
class FineTuningWorkflow:
    def __init__(self) -> None:
        self.lifecycle = Lifecycle(TaskStatus.PENDING, check_transition, self._project, suspended=TaskStatus.SUSPENDED)
        self._iteration = 0
        self._org_id: str | None = None
        self._max_iterations = 1
        self._history: list[IterationRecord] = []
        self._baseline_test_score: float | None = None
        self._error: str | None = None

    # ------------------------------------------------------------ commands and queries

    @workflow.signal
    def pause(self) -> None:
        """Suspend at the next safe point: the running activity checkpoints (training) and stops. Fire and forget
        (e.g. from the Temporal Web UI); the API sends the `request_pause` update, which says whether it was
        accepted."""
        self.lifecycle.request_pause()

    @workflow.signal
    def resume(self) -> None:
        self.lifecycle.request_resume()

    @workflow.update(name="request_pause")
    def request_pause(self) -> str:
        """Accept a pause: the running phase checkpoints and stops. Returns the status it was accepted in."""
        self.lifecycle.request_pause()
        return self.lifecycle.status.value

    @request_pause.validator
    def _validate_pause(self) -> None:
        self.lifecycle.check_pause(self._subject())

    @workflow.update(name="request_resume")
    def request_resume(self) -> str:
        """Accept a resume: the suspended phase runs again from its checkpoint. Returns the phase it goes back to."""
        phase = self.lifecycle.suspended_from
        self.lifecycle.request_resume()
        return phase.value if phase else self.lifecycle.status.value

    @request_resume.validator
    def _validate_resume(self) -> None:
        self.lifecycle.check_resume(self._subject())

    @workflow.update(name="request_cancel")
    def request_cancel(self) -> str:
        """Accept a cancellation, which the caller then sends as Temporal's own (the Web UI's cancel button sends it
        alone)."""
        return self.lifecycle.status.value

    @request_cancel.validator
    def _validate_cancel(self) -> None:
        self.lifecycle.check_cancel(self._subject(), TaskStatus.CANCELLED)

    @workflow.query
    def progress(self) -> TaskProgress:
        lifecycle = self.lifecycle
        return TaskProgress(
            status=lifecycle.status.value,
            phase=lifecycle.status.value if lifecycle.status != TaskStatus.SUSPENDED else None,
            suspended_from=lifecycle.suspended_from.value if lifecycle.suspended_from else None,
            iteration=self._iteration,
            max_iterations=self._max_iterations,
            pause_requested=lifecycle.pause_requested,
            baseline_test_score=self._baseline_test_score,
            scores=[
                IterationScores(
                    iteration=r.iteration,
                    test=r.test_score,
                    feedback=r.feedback_score,
                    grade=r.grade,
                    test_fact_accuracy=r.test_accuracy,
                    feedback_fact_accuracy=r.feedback_accuracy,
                )
                for r in self._history
            ],
            error=self._error,
        )

    def _subject(self) -> str:
        return f"task {workflow.info().workflow_id}"

    # ------------------------------------------------------------ the run

    @workflow.run
    async def run(self, task: FineTuningInput) -> FineTuningResult:
        state = task.state
        self._org_id = task.org_id
        self._iteration = state.iteration
        self._max_iterations = task.max_iterations if task.mode == TaskMode.CONTINUOUS else 1
        self._history = list(state.history)
        self._baseline_test_score = state.baseline_test_score
        self.lifecycle.pause_requested = state.pause_requested
        if state.iteration > 1:
            self.lifecycle.status = TaskStatus.LOOPING  # the previous run ended in LOOPING and continued as new
        # one undo, whatever fails or is cancelled: remove the unfinished iteration's artifacts and close the task's
        # projection
        self.lifecycle.push_undo("task", lambda final, error: self._compensate(task, final, error))
        try:
            return await self._run_loop(task)
        except (asyncio.CancelledError, CancelledError):
            await self.lifecycle.compensate(TaskStatus.CANCELLED, None)
            raise
        except ActivityError as err:
            message = failure_message(err)
            self._error = message
            await self.lifecycle.compensate(TaskStatus.FAILED, message)
            raise ApplicationError(message, type="FineTuningFailed", non_retryable=True) from err

    async def _run_loop(self, task: FineTuningInput) -> FineTuningResult:
        """Run iterations until a stop reason; continue-as-new between two iterations when this run's history is long
        enough."""
        state = task.state
        iterations_per_run = max(1, task.iterations_per_run)
        completed_in_run = 0
        while True:
            evaluated, following = await self._run_iteration(task, state)
            completed_in_run += 1
            stop_reason = self._stop_reason(task, state.iteration, evaluated)
            if stop_reason is not None:
                break
            await self.lifecycle.record(TaskStatus.LOOPING)
            state = following
            if completed_in_run >= iterations_per_run or workflow.info().is_continue_as_new_suggested():
                carried = dataclasses.replace(state, pause_requested=self.lifecycle.pause_requested)
                workflow.continue_as_new(dataclasses.replace(task, state=carried))
            self._iteration = state.iteration

        # the iteration the task keeps: its last, or (newer runs) the one the feedback split judges best
        kept, kept_because = self._history[-1].iteration, None
        if workflow.patched("keep-best-feedback-iteration"):
            choice = choose_iteration(self._history)
            kept, kept_because = choice.iteration, choice.because
        report: ReportResult = await workflow.execute_activity_method(
            BookkeepingActivities.build_report,
            ReportInput(
                task_id=task.task_id,
                mode=task.mode,
                model_name=task.model_name,
                stop_reason=stop_reason,
                baseline_key=evaluated.baseline_key,
                iterations=self._history,
                org_id=task.org_id,
                final_iteration=kept if kept_because else None,
                final_because=kept_because,
            ),
            task_queue=TASK_QUEUE_BOOKKEEPING,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=_phase_options(task, "", 0).retry,
        )
        if workflow.patched("register-final-adapter"):
            # the kept iteration's adapter becomes the next version of the task's registered model (a refusal is
            # reported, not raised)
            await workflow.execute_activity_method(
                RegistryActivities.register_final_adapter,
                RegisterFinalAdapterInput(task_id=task.task_id, iteration=kept, org_id=task.org_id),
                task_queue=TASK_QUEUE_BOOKKEEPING,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=_phase_options(task, "", 0).retry,
            )
        await self.lifecycle.record(TaskStatus.COMPLETED, report_key=report.report_key)
        return FineTuningResult(
            task_id=task.task_id,
            status=TaskStatus.COMPLETED.value,
            iterations=self._history,
            report_key=report.report_key,
            stop_reason=stop_reason,
        )

    async def _run_iteration(self, task: FineTuningInput, state: LoopState) -> tuple[EvaluateResult, LoopState]:
        """One iteration: optimize -> train -> evaluate; returns the evaluation and the state the next iteration starts
        from."""
        timeouts, n, lifecycle = task.timeouts, state.iteration, self.lifecycle
        previous = state.history[-1] if state.history else None
        # an incremental task's first iteration continues from its parent: its adapter, and its last evaluation
        previous_evaluation = previous.evaluation_key if previous else task.parent_evaluation_key
        previous_adapter = previous.adapter_key if previous else task.init_adapter_key

        optimized: OptimizeResult = await lifecycle.run_phase(
            TaskStatus.OPTIMIZING,
            OptimizeActivities.optimize_dataset,
            OptimizeInput(
                task_id=task.task_id,
                org_id=task.org_id,
                iteration=n,
                dataset_id=task.dataset_id,
                dataset_version=task.dataset_version,
                splits_key=state.splits_key,
                previous_evaluation_key=previous_evaluation,
                targeting=task.targeting,
                knowledge_base_id=task.knowledge_base_id,
                retrieval_top_k=task.retrieval_top_k,
                context_statements=task.context_statements,
                oracle_fraction=task.oracle_fraction,
                model_name=task.model_name,
                targeting_source=task.targeting_source,
                corrections_dataset_id=task.corrections_dataset_id,
                corrections_dataset_version=task.corrections_dataset_version,
                rows_per_iteration=task.hyperparameters.rows_per_iteration(),
            ),
            _phase_options(task, TASK_QUEUE_OPTIMIZE, timeouts.optimize_seconds, heartbeat=False),
            input_dataset_id=previous.dataset_id if previous else task.dataset_id,
        )
        await lifecycle.record(
            TaskStatus.OPTIMIZING,
            phase_event="finished",
            phase=TaskStatus.OPTIMIZING,
            output_dataset_id=optimized.dataset_id,
            metrics=optimized.log,
        )

        trained: TrainResult = await lifecycle.run_phase(
            TaskStatus.TRAINING,
            TrainActivities.train_adapter,
            TrainInput(
                task_id=task.task_id,
                org_id=task.org_id,
                iteration=n,
                model_name=task.model_name,
                train_key=optimized.train_key,
                hyperparameters=task.hyperparameters,
                init_adapter_key=previous_adapter,
            ),
            _phase_options(task, TASK_QUEUE_TRAIN, timeouts.train_seconds),
            input_dataset_id=optimized.dataset_id,
        )
        await lifecycle.record(
            TaskStatus.TRAINING,
            phase_event="finished",
            phase=TaskStatus.TRAINING,
            adapter_key=trained.adapter_key,
            metrics={
                "steps": trained.steps,
                "resumed_from_step": trained.resumed_from_step,
                "final_loss": trained.final_loss,
                "tokens_per_second": trained.tokens_per_second,
                "seconds": trained.seconds,
            },
        )

        evaluated: EvaluateResult = await lifecycle.run_phase(
            TaskStatus.EVALUATING,
            EvaluateActivities.evaluate_adapter,
            EvaluateInput(
                task_id=task.task_id,
                org_id=task.org_id,
                iteration=n,
                model_name=task.model_name,
                adapter_key=trained.adapter_key,
                splits_key=optimized.splits_key,
                train_key=optimized.train_key,
                baseline_key=state.baseline_key,
                previous_evaluation_key=previous_evaluation,
                contexts_key=optimized.contexts_key,
                max_seq_length=max(256, task.hyperparameters.max_seq_length),
                previous_is_parent=previous is None and task.parent_evaluation_key is not None,
            ),
            _phase_options(task, TASK_QUEUE_EVALUATE, timeouts.evaluate_seconds),
            input_dataset_id=optimized.dataset_id,
        )
        self._baseline_test_score = evaluated.baseline_test_score
        record = IterationRecord(
            iteration=n,
            dataset_id=optimized.dataset_id,
            adapter_key=trained.adapter_key,
            evaluation_key=evaluated.evaluation_key,
            test_score=evaluated.test_score,
            feedback_score=evaluated.feedback_score,
            grade=evaluated.grade,
            train_steps=trained.steps,
            resumed_from_step=trained.resumed_from_step,
            knowledge_base_version=optimized.knowledge_base_version,
            test_accuracy=evaluated.test_accuracy,
            feedback_accuracy=evaluated.feedback_accuracy,
        )
        self._history.append(record)
        await lifecycle.record(
            TaskStatus.EVALUATING,
            phase_event="finished",
            phase=TaskStatus.EVALUATING,
            adapter_key=trained.adapter_key,
            evaluation_key=evaluated.evaluation_key,
            score=evaluated.test_score,
            baseline_score=evaluated.baseline_test_score,
            output_dataset_id=optimized.dataset_id,
            metrics={
                "test": evaluated.test_score,
                "feedback": evaluated.feedback_score,
                "grade": evaluated.grade,
                "bad_cases": evaluated.bad_cases,
                "test_fact_accuracy": evaluated.test_accuracy,
                "feedback_fact_accuracy": evaluated.feedback_accuracy,
                "baseline_fact_accuracy": evaluated.baseline_test_accuracy,
            },
        )

        return evaluated, LoopState(
            iteration=n + 1,
            splits_key=optimized.splits_key,
            baseline_key=evaluated.baseline_key,
            baseline_test_score=evaluated.baseline_test_score,
            history=list(self._history),
        )

    def _stop_reason(self, task: FineTuningInput, iteration: int, evaluated: EvaluateResult) -> str | None:
        if task.mode != TaskMode.CONTINUOUS:
            return "standard task"
        if task.performance_threshold is not None:
            if workflow.patched("stop-on-feedback-accuracy"):
                # the loop decides on the feedback split (the test split is only ever reported): its share of right
                # answers, or its blended score where its examples have no fact checks
                reached, what = (
                    (evaluated.feedback_accuracy, "feedback fact accuracy")
                    if evaluated.feedback_accuracy is not None
                    else (evaluated.feedback_score, "feedback score")
                )
                if reached >= task.performance_threshold:
                    return f"{what} {reached:.4f} reached the threshold {task.performance_threshold}"
            elif evaluated.test_score >= task.performance_threshold:
                return f"test score {evaluated.test_score:.4f} reached the threshold {task.performance_threshold}"
        if iteration >= task.max_iterations:
            return f"reached max_iterations={task.max_iterations}"
        return None

    # ------------------------------------------------------------ projection and compensation

    async def _project(self, status: TaskStatus, **fields: Any) -> None:
        # a local activity: a short, idempotent database write needs no task-queue round trip
        await workflow.execute_local_activity_method(
            BookkeepingActivities.record_progress,
            RecordProgressInput(
                task_id=workflow.info().workflow_id,
                status=status.value,
                iteration=self._iteration,
                org_id=self._org_id,
                **fields,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BOOKKEEPING_RETRY,
        )

    async def _compensate(self, task: FineTuningInput, final: TaskStatus, error: str | None) -> None:
        """Delete the unfinished iteration's artifacts, mark its executions, end the task's projection in `final`."""
        finished = any(r.iteration == self._iteration for r in self._history)
        await workflow.execute_activity_method(
            BookkeepingActivities.compensate_iteration,
            CompensateInput(
                task_id=task.task_id,
                iteration=None if finished else self._iteration,
                final_status=final.value,
                error=error,
                org_id=task.org_id,
            ),
            task_queue=TASK_QUEUE_BOOKKEEPING,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=BOOKKEEPING_RETRY,
        )


def _phase_options(task: FineTuningInput, queue: str, seconds: int, heartbeat: bool = True) -> PhaseOptions:
    retry = RetryPolicy(
        initial_interval=timedelta(seconds=task.timeouts.retry_initial_seconds),
        maximum_attempts=task.timeouts.max_attempts,
    )
    return PhaseOptions(
        task_queue=queue,
        start_to_close=timedelta(seconds=seconds),
        retry=retry,
        heartbeat=timedelta(seconds=task.timeouts.heartbeat_seconds) if heartbeat else None,
    )
