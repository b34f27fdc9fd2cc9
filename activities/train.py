"""train_adapter: LoRA training that heartbeats, checkpoints to object storage and resumes after a crash or pause."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.context import ActivityContext, Heartbeater, invalid_input
from core.status import TaskStatus
from ml.examples import examples_from_jsonl
from ml.trainer import TrainingInterrupted, TrainingProgress, train_lora
from observability import metrics
from schemas.workflow_io import TrainInput, TrainResult
from storage import keys
from storage.object_store import ObjectNotFound, get_bytes, get_dir, put_dir, put_file

StepHook = Callable[[TrainingProgress], None]


def checkpoint_prefix(task_id: str, iteration: int) -> str:
    return keys.model_prefix(task_id, iteration) + "checkpoint/"


class TrainActivities:
    def __init__(self, ctx: ActivityContext, after_step: StepHook | None = None):
        self.ctx = ctx
        self.after_step = after_step  # lets a test crash an attempt at a chosen step

    @activity.defn(name="train_adapter")
    def train_adapter(self, inp: TrainInput) -> TrainResult:
        activity.logger.info("training task %s (organization %s) iteration %s", inp.task_id, inp.org_id, inp.iteration)
        # cancellation is observed at step boundaries (to checkpoint first), never injected mid-step
        progress = self.ctx.progress_recorder(inp.task_id, inp.iteration, TaskStatus.TRAINING.value)
        with activity.shield_thread_cancel_exception(), Heartbeater(progress=progress) as heartbeat:
            return self._train(inp, heartbeat)

    def _train(self, inp: TrainInput, heartbeat: Heartbeater) -> TrainResult:
        heartbeat.update(stage="starting")
        from ml.base_model import load_model_and_tokenizer

        try:
            hp = inp.hyperparameters.validated()
        except ValueError as exc:
            raise invalid_input(str(exc)) from exc
        store, prefix = self.ctx.store, keys.model_prefix(inp.task_id, inp.iteration)
        ckpt_prefix = checkpoint_prefix(inp.task_id, inp.iteration)
        examples = examples_from_jsonl(get_bytes(store, inp.train_key))
        heartbeat.update(stage="loading model")
        model, tokenizer = load_model_and_tokenizer(inp.model_name, self.ctx.settings.model_cache_dir)

        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            resume_dir = self._resume_point(ckpt_prefix, tmp / "resume")
            init_adapter = (
                get_dir(store, inp.init_adapter_key, tmp / "init")
                if inp.init_adapter_key and resume_dir is None
                else None
            )
            last = {"checkpoint_key": ckpt_prefix if resume_dir else None}

            def on_checkpoint(directory: Path, step: int) -> None:
                # checkpoint.json names the step: upload it last so a crash mid-upload never points at stale state
                for path in sorted(
                    (p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.name == "checkpoint.json"
                ):
                    put_file(store, ckpt_prefix + path.relative_to(directory).as_posix(), path)
                last["checkpoint_key"] = ckpt_prefix
                heartbeat.update(**{**heartbeat.details, "checkpoint_key": ckpt_prefix, "checkpoint_step": step})

            def on_progress(p: TrainingProgress) -> None:
                metrics.training_step(p.loss, p.tokens_per_second)
                heartbeat.update(**asdict(p), stage="training", checkpoint_key=last["checkpoint_key"])
                if self.after_step:
                    self.after_step(p)

            try:
                summary = train_lora(
                    model,
                    tokenizer,
                    examples,
                    hp,
                    tmp / "adapter",
                    init_adapter=init_adapter,
                    resume_from=resume_dir,
                    checkpoint_dir=tmp / "checkpoint",
                    checkpoint_every=self.ctx.settings.checkpoint_every_steps,
                    log_every=self.ctx.settings.train_log_every_steps,
                    on_checkpoint=on_checkpoint,
                    on_progress=on_progress,
                    should_stop=lambda: activity.is_cancelled() or activity.is_worker_shutdown(),
                    precision=self.ctx.settings.training_precision,
                )
            except TrainingInterrupted as stop:
                if activity.is_worker_shutdown():
                    raise ApplicationError(
                        f"worker shut down; checkpoint at step {stop.step}", type="WorkerShutdown"
                    ) from stop
                details = activity.cancellation_details()
                reason = "timed out" if details and details.timed_out else "paused or cancelled"
                raise CancelledError(f"{reason} at step {stop.step}; checkpoint saved") from stop
            except ValueError as exc:
                raise invalid_input(str(exc)) from exc
            adapter_key = prefix + "adapter/"
            store.delete_prefix(adapter_key)
            put_dir(store, adapter_key, tmp / "adapter")
        summary_record = {**asdict(summary), "hyperparameters": asdict(hp), "continued_from": inp.init_adapter_key}
        metrics_key = self.ctx.write_json(prefix + "training_metrics.json", summary_record)
        store.delete_prefix(ckpt_prefix)
        return TrainResult(
            adapter_key=adapter_key,
            steps=summary.steps,
            total_steps=summary.total_steps,
            resumed_from_step=summary.resumed_from_step,
            final_loss=summary.loss_curve[-1][1] if summary.loss_curve else float("nan"),
            useful_tokens=summary.useful_tokens,
            seconds=summary.seconds,
            tokens_per_second=summary.tokens_per_second,
            metrics_key=metrics_key,
        )

    def _resume_point(self, ckpt_prefix: str, directory: Path) -> Path | None:
        """The checkpoint to resume from: the one named in the last attempt's heartbeat, else one a pause left in
        storage."""
        details = activity.info().heartbeat_details
        key = details[0].get("checkpoint_key") if details and isinstance(details[0], dict) else None
        for candidate in filter(None, (key, ckpt_prefix)):
            try:
                get_dir(self.ctx.store, candidate, directory)
            except ObjectNotFound:
                continue
            if (directory / "checkpoint.json").is_file():
                activity.logger.info("resuming training from checkpoint %s", candidate)
                return directory
        return None
