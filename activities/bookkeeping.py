"""Small activities on the bookkeeping queue: the database projection, compensation and the final report."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext
from core.clock import as_utc, utcnow
from core.status import ACTIVE_PHASES, TaskStatus, can_transition
from db.models import Dataset, MLTask, TaskExecution
from ml.report import build_task_report, plot_report, render_markdown
from observability import metrics
from schemas.reports import EvaluationReport, TaskInfo
from schemas.workflow_io import CompensateInput, CompensateResult, RecordProgressInput, ReportInput, ReportResult
from services import staleness, task_events
from storage import keys
from storage.object_store import put_bytes, put_file

RUNNING, COMPLETED, SUSPENDED = "RUNNING", "COMPLETED", "SUSPENDED"


class BookkeepingActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="record_progress")
    def record_progress(self, inp: RecordProgressInput) -> None:
        """Apply one transition to ml_tasks / task_executions (idempotent, so retries are safe)."""
        with self.ctx.sessions.begin() as session:
            task = session.get(MLTask, inp.task_id, with_for_update=True)
            if task is None:
                raise ApplicationError(
                    f"task {inp.task_id} has no database row", type="MissingTask", non_retryable=True
                )
            status = TaskStatus(inp.status)
            current = TaskStatus(task.status)
            if status != current and not can_transition(
                current, status, suspended_from=TaskStatus(task.suspended_from) if task.suspended_from else None
            ):
                raise ApplicationError(
                    f"projection refuses {current} -> {status} for task {inp.task_id}",
                    type="IllegalTransition",
                    non_retryable=True,
                )
            previous, task.status = task.status, status.value
            task.suspended_from = inp.suspended_from if status == TaskStatus.SUSPENDED else None
            task.current_iteration = inp.iteration
            execution = self._execution(
                session,
                inp.task_id,
                inp.iteration,
                inp.phase or inp.suspended_from or (status.value if status in ACTIVE_PHASES else None),
            )
            if inp.phase_event == "started" and execution is None:
                session.add(
                    TaskExecution(
                        task_id=inp.task_id,
                        iteration=inp.iteration,
                        phase=inp.phase,
                        status=RUNNING,
                        input_dataset_id=inp.input_dataset_id,
                    )
                )
            elif inp.phase_event == "finished" and execution is not None:
                if execution.status != COMPLETED:  # the first time (a retried projection finds it done)
                    metrics.phase_finished(execution.phase, (utcnow() - as_utc(execution.started_at)).total_seconds())
                    if inp.phase == TaskStatus.EVALUATING and inp.score is not None:
                        facts = {
                            k: (inp.metrics or {}).get(k) for k in ("test_fact_accuracy", "baseline_fact_accuracy")
                        }
                        task_events.record(
                            session,
                            task.id,
                            task_events.SCORE,
                            iteration=inp.iteration,
                            score=inp.score,
                            baseline_score=inp.baseline_score
                            if inp.baseline_score is not None
                            else task.baseline_score,
                            **{k: v for k, v in facts.items() if v is not None},
                        )
                execution.status, execution.completed_at = COMPLETED, utcnow()
                for field in ("output_dataset_id", "adapter_key", "evaluation_key", "score", "metrics"):
                    if getattr(inp, field) is not None:
                        setattr(execution, field, getattr(inp, field))
            elif execution is not None and execution.status in (RUNNING, SUSPENDED):
                execution.status = SUSPENDED if status == TaskStatus.SUSPENDED else RUNNING
            if inp.phase == TaskStatus.OPTIMIZING and inp.output_dataset_id:
                task.current_dataset_id = inp.output_dataset_id
            for source, target in (
                ("adapter_key", "latest_adapter_key"),
                ("evaluation_key", "latest_evaluation_key"),
                ("score", "latest_score"),
                ("baseline_score", "baseline_score"),
                ("report_key", "report_key"),
                ("error", "error"),
            ):
                if getattr(inp, source) is not None and (source != "adapter_key" or inp.phase == TaskStatus.EVALUATING):
                    setattr(task, target, getattr(inp, source))
            task_events.record_status_change(session, task, previous)
            if task.status != previous:
                metrics.task_status_changed(task.status)

    @staticmethod
    def _execution(session, task_id: str, iteration: int, phase: str | None) -> TaskExecution | None:
        if phase is None:
            return None
        return session.scalars(
            select(TaskExecution)
            .where(TaskExecution.task_id == task_id, TaskExecution.iteration == iteration, TaskExecution.phase == phase)
            .order_by(TaskExecution.id.desc())
        ).first()

    @activity.defn(name="compensate_iteration")
    def compensate_iteration(self, inp: CompensateInput) -> CompensateResult:
        """Undo the unfinished iteration (artifacts and its optimized dataset), keep finished ones, end the task."""
        deleted, datasets = 0, []
        if inp.iteration is not None:
            for prefix in keys.iteration_prefixes(inp.task_id, inp.iteration):
                deleted += self.ctx.store.delete_prefix(prefix)
            # the task's fixed splits live under iteration 1's prefix, which is unfinished only if no iteration finished
            deleted += self.ctx.store.delete_prefix(
                keys.optimized_prefix(keys.optimized_dataset_id(inp.task_id, inp.iteration))
            )
        with self.ctx.sessions.begin() as session:
            task = session.get(MLTask, inp.task_id, with_for_update=True)
            if (
                inp.iteration is not None
                and session.get(Dataset, keys.optimized_dataset_id(inp.task_id, inp.iteration)) is not None
            ):
                dataset_id = keys.optimized_dataset_id(inp.task_id, inp.iteration)
                if task.current_dataset_id == dataset_id:
                    task.current_dataset_id = (
                        keys.optimized_dataset_id(inp.task_id, inp.iteration - 1) if inp.iteration > 1 else None
                    )
                session.delete(session.get(Dataset, dataset_id))
                datasets.append(dataset_id)
            for execution in session.scalars(
                select(TaskExecution).where(
                    TaskExecution.task_id == inp.task_id, TaskExecution.status.in_([RUNNING, SUSPENDED])
                )
            ):
                execution.status, execution.completed_at, execution.error = inp.final_status, utcnow(), inp.error
            previous, task.status, task.suspended_from = task.status, inp.final_status, None
            if inp.error:
                task.error = inp.error
            task_events.record_status_change(session, task, previous)
        activity.logger.info(
            "compensated task %s iteration %s: %d objects, datasets %s", inp.task_id, inp.iteration, deleted, datasets
        )
        return CompensateResult(deleted_objects=deleted, deleted_datasets=datasets)

    @activity.defn(name="build_report")
    def build_report(self, inp: ReportInput) -> ReportResult:
        with self.ctx.sessions() as session:
            task = session.get(MLTask, inp.task_id)
            name, parent = (task.name, task.parent_task_id) if task else (inp.task_id, None)
            stale = staleness.task_stale_rows(session, self.ctx.store, task) if task else []
        evaluations = [self.ctx.read_model(r.evaluation_key, EvaluationReport) for r in inp.iterations]
        training = [
            self.ctx.read_json(keys.model_prefix(inp.task_id, r.iteration) + "training_metrics.json")
            for r in inp.iterations
        ]
        info = TaskInfo(
            task_id=inp.task_id,
            name=name,
            mode=inp.mode,
            model_name=inp.model_name,
            stop_reason=inp.stop_reason,
            parent_task_id=parent,
        )
        report = build_task_report(
            info,
            self.ctx.read_model(inp.baseline_key, EvaluationReport),
            evaluations,
            training,
            stale,
            final_iteration=inp.final_iteration,
            final_because=inp.final_because,
        )
        prefix = keys.evaluation_prefix(inp.task_id)
        report_key = self.ctx.write_model(prefix + "report.json", report)
        with tempfile.TemporaryDirectory() as tmp:
            plot_key = prefix + "report.png"
            put_file(self.ctx.store, plot_key, plot_report(report, Path(tmp) / "report.png"))
        markdown_key = prefix + "report.md"
        put_bytes(self.ctx.store, markdown_key, render_markdown(report, "report.png").encode("utf-8"))
        return ReportResult(report_key=report_key, markdown_key=markdown_key, plot_key=plot_key)
