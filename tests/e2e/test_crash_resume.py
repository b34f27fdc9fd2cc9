"""Training survives crashes: a retried attempt resumes from the checkpoint in its heartbeat; so does a SIGKILLed
worker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import httpx
from temporalio import activity

from activities.context import ActivityContext
from activities.train import TrainActivities
from testkit.api import api_client, create_task, upload, wait_until_done, with_temporal
from testkit.documents import write_dataset
from testkit.phases import running_workers
from testkit.polling import poll_until
from testkit.servers import free_port
from workers.pools import activities_by_queue


class CrashAtStep:
    """Kills the first attempt of training at a given step, as a crash would."""

    def __init__(self, step: int):
        self.step = step

    def __call__(self, progress) -> None:
        if activity.info().attempt == 1 and progress.step == self.step:
            raise RuntimeError(f"simulated crash at step {progress.step}")


async def test_a_retried_training_attempt_resumes_from_its_last_checkpoint(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env, checkpoint_every_steps=3)
    ctx = ActivityContext.from_settings(settings)
    activities = activities_by_queue(ctx, train=TrainActivities(ctx, after_step=CrashAtStep(7)))
    async with running_workers(temporal_env.client, ctx, activities), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        task_id = (
            await create_task(
                api,
                "standard",
                {
                    "task_name": "crash",
                    "model_name": tiny_model_dir,
                    "dataset_id": dataset["dataset_id"],
                    "hyperparameters": {"max_steps": 10, "batch_size": 4, "max_seq_length": 96},
                },
            )
        )["task_id"]
        await api.post(f"/api/v1/tasks/{task_id}/start")
        task = await wait_until_done(api, task_id)
        executions = (await api.get(f"/api/v1/tasks/{task_id}/executions")).json()
    assert task["status"] == "COMPLETED", task["error"]
    training = next(e for e in executions if e["phase"] == "TRAINING")
    assert training["metrics"]["resumed_from_step"] == 6  # the checkpoint before the crash at step 7
    assert training["metrics"]["steps"] == 10


STEPS = 400  # of the 500 batches that 100 epochs of the training split make


async def test_a_sigkilled_training_worker_is_replaced_and_the_run_finishes(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env, checkpoint_every_steps=10, heartbeat_timeout_seconds=10)
    ctx = ActivityContext.from_settings(settings)
    metrics_port = free_port()
    env = {
        **os.environ,
        "WLOPS_DATA_DIR": str(settings.data_dir),
        "WLOPS_TEMPORAL_ADDRESS": settings.temporal_address,
        "WLOPS_MODEL_CACHE": str(settings.model_cache_dir),
        "WLOPS_CHECKPOINT_EVERY_STEPS": "10",
        "WLOPS_WORKER_METRICS_PORT": str(metrics_port),
        "WLOPS_TRAIN_LOG_EVERY_STEPS": "5",
    }

    with open(tmp_path / "train-worker.log", "ab") as log:

        def start_train_worker() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "cli.main", "worker", "--pool", "train"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        # every pool but training runs in this process; training runs in a worker process we can kill
        worker = start_train_worker()
        try:
            async with (
                running_workers(temporal_env.client, ctx, pools=("control", "optimize", "evaluate")),
                api_client(settings) as api,
            ):
                dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
                task_id = (
                    await create_task(
                        api,
                        "standard",
                        {
                            "task_name": "sigkill",
                            "model_name": tiny_model_dir,
                            "dataset_id": dataset["dataset_id"],
                            # enough steps that the kill lands mid-training even when the machine is idle (the tiny
                            # model does ~4,000 tokens/s)
                            "hyperparameters": {
                                "max_steps": STEPS,
                                "epochs": 100,
                                "batch_size": 4,
                                "max_seq_length": 96,
                            },
                        },
                    )
                )["task_id"]
                await api.post(f"/api/v1/tasks/{task_id}/start")
                step = await _wait_for_training_step(api, task_id, at_least=35)
                scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                worker = start_train_worker()
                task = await wait_until_done(api, task_id, timeout=300)
                executions = (await api.get(f"/api/v1/tasks/{task_id}/executions")).json()
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(30)
    assert task["status"] == "COMPLETED", task["error"]
    training = next(e for e in executions if e["phase"] == "TRAINING")
    # at least the last checkpoint before the step we saw; training may have passed another checkpoint
    # between that heartbeat and the SIGKILL, so not necessarily at most `step`
    resumed = training["metrics"]["resumed_from_step"]
    assert (step // 10) * 10 <= resumed < STEPS and resumed % 10 == 0 and resumed >= 30, (training["metrics"], step)
    assert training["metrics"]["steps"] == STEPS

    # the worker process served the SDK's metrics and its own on its port while it trained
    assert (
        "temporal_activity_execution_latency" in scraped or "temporal_activity_schedule_to_start_latency" in scraped
    ), scraped[:2000]
    loss = next(line for line in scraped.splitlines() if line.startswith("wlops_training_loss"))
    assert float(loss.rsplit(" ", 1)[1]) > 0 and 'task_queue="wlops-train"' in loss
    assert re.search(r"^wlops_training_steps_total\{.*\} (\d+)", scraped, re.M)
    # its logs are JSON lines with the task's context, training steps with loss and speed, and no progress bars
    lines = (tmp_path / "train-worker.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    steps = [r for r in records if r["logger"] == "ml.trainer" and "step" in r]
    assert steps and all(
        r["task_id"] == task_id and r["iteration"] == 1 and r["phase"] == "train_adapter" and r["org_id"] for r in steps
    )
    assert {r["step"] % 5 for r in steps} == {0} and all(r["loss"] > 0 and r["tokens_per_second"] > 0 for r in steps)
    assert not [line for line in lines if "%|" in line or "it/s]" in line]


async def _wait_for_training_step(api, task_id: str, at_least: int, timeout: float = 120) -> int:
    async def step() -> int:
        progress = (await api.get(f"/api/v1/tasks/{task_id}")).json().get("progress") or {}
        return progress.get("step") or 0

    return await poll_until(
        step, lambda reached: reached >= at_least, timeout=timeout, what=f"training of {task_id} at step {at_least}"
    )
