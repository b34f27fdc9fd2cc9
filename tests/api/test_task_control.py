"""Pause, resume and cancel through the API: each is a workflow update, so the workflow itself accepts or refuses it."""

from __future__ import annotations

from activities.context import ActivityContext
from db.models import MLTask
from temporal_client.workflows import FineTuningWorkflow
from testkit.api import api_client, upload, wait_until_done, with_temporal
from testkit.documents import write_dataset
from testkit.phases import FakePhases, running_workers, wait_for_status


async def started_task(api, tmp_path) -> str:
    dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
    task_id = (
        await api.post("/api/v1/tasks/standard", json={"task_name": "control", "dataset_id": dataset["dataset_id"]})
    ).json()["task_id"]
    assert (await api.post(f"/api/v1/tasks/{task_id}/start")).status_code == 202
    return task_id


def set_status(ctx: ActivityContext, task_id: str, status: str) -> None:
    """Make the database projection say something the workflow does not (as a projection a moment behind would)."""
    with ctx.sessions.begin() as session:
        session.get(MLTask, task_id).status = status


async def test_pause_resume_and_cancel_go_through_the_workflow(temporal_env, settings, tmp_path):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    fakes = FakePhases(ctx, train_steps=400, step_seconds=0.02)
    async with running_workers(temporal_env.client, ctx, fakes.activities()), api_client(settings) as api:
        task_id = await started_task(api, tmp_path)
        await wait_for_status(ctx, task_id, "TRAINING")
        paused = await api.post(f"/api/v1/tasks/{task_id}/pause")
        assert paused.status_code == 202, paused.text
        await wait_for_status(ctx, task_id, "SUSPENDED")
        again = await api.post(f"/api/v1/tasks/{task_id}/pause")
        assert again.status_code == 409 and "it is SUSPENDED" in again.json()["detail"]

        # the projection says TRAINING, the workflow knows it is SUSPENDED: the workflow's validator refuses
        set_status(ctx, task_id, "TRAINING")
        refused = await api.post(f"/api/v1/tasks/{task_id}/pause")
        assert (
            refused.status_code == 409 and refused.json()["detail"] == f"cannot pause task {task_id}: it is SUSPENDED"
        )
        set_status(ctx, task_id, "SUSPENDED")

        resumed = await api.post(f"/api/v1/tasks/{task_id}/resume")
        assert resumed.status_code == 202 and "back to TRAINING" in resumed.json()["detail"]
        await wait_for_status(ctx, task_id, "TRAINING")
        cancelled = await api.post(f"/api/v1/tasks/{task_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        task = await wait_until_done(api, task_id, timeout=60)
        assert task["status"] == "CANCELLED"
        assert (await api.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 409
    assert len(fakes.calls["train"]) == 2  # paused once, resumed once


async def test_a_finished_workflow_takes_no_command_whatever_the_projection_says(temporal_env, settings, tmp_path):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx, FakePhases(ctx).activities()), api_client(settings) as api:
        task_id = await started_task(api, tmp_path)
        assert (await wait_until_done(api, task_id, timeout=60))["status"] == "COMPLETED"
        # the workflow closes right after its last projection
        await temporal_env.client.get_workflow_handle_for(FineTuningWorkflow.run, task_id).result()
        set_status(ctx, task_id, "TRAINING")
        for action in ("pause", "cancel"):
            response = await api.post(f"/api/v1/tasks/{task_id}/{action}")
            assert response.status_code == 409 and "has no running workflow" in response.json()["detail"], response.text
        with ctx.sessions() as session:
            # a started task is never cancelled behind the workflow's back
            assert session.get(MLTask, task_id).status == "TRAINING"
