"""Retention on a real Temporal server and database: an organization's limits set through the API, a pass of the
RetentionWorkflow that deletes the QA history and finished tasks' events past them (never a running task's events,
never another organization's rows) and records what it deleted; the schedule that runs it, made once and brought in
line when the interval changes, and triggered for real."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from activities.context import ActivityContext
from cli.users import create_user
from core.access import Role
from core.clock import utcnow
from core.settings import TASK_QUEUE_WORKFLOWS
from db.models import MLTask, QAEntry, RetentionRun, TaskEvent
from schemas.workflow_io import RetentionInput
from services.retention import ensure_schedule
from temporal_client.workflows import RETENTION_SCHEDULE_ID, RetentionWorkflow
from testkit.api import TEST_PASSWORD, api_client, with_temporal
from testkit.factories import make_task
from testkit.phases import running_workers
from testkit.polling import poll_until


def qa_entry(org_id: str, days_old: float) -> QAEntry:
    return QAEntry(
        org_id=org_id,
        conversation_id="c",
        model="bot@1",
        messages=[{"role": "user", "content": "q"}],
        answer="a",
        prompt_tokens=1,
        completion_tokens=1,
        latency_ms=1,
        created_at=utcnow() - timedelta(days=days_old),
    )


def counts(ctx: ActivityContext, org_id: str) -> tuple[int, int]:
    with ctx.sessions() as session:
        qa = session.scalar(select(func.count()).select_from(QAEntry).where(QAEntry.org_id == org_id))
        events = session.scalar(select(func.count()).select_from(TaskEvent))
    return qa or 0, events or 0


async def test_a_retention_pass_prunes_what_expired_and_records_it(settings, temporal_env):
    settings = with_temporal(settings, temporal_env, retention_interval_hours=6)
    ctx = ActivityContext.from_settings(settings)
    acme = create_user(settings, "ada", TEST_PASSWORD, "acme", Role.OWNER).org.id
    other = create_user(settings, "bob", TEST_PASSWORD, "globex", Role.OWNER).org.id
    done, running = make_task(ctx, org_id=acme), make_task(ctx, org_id=acme)
    with ctx.sessions.begin() as session:
        session.get_one(MLTask, done.id).status = "COMPLETED"
        session.get_one(MLTask, running.id).status = "TRAINING"
        session.add_all([qa_entry(acme, 40), qa_entry(acme, 2), qa_entry(other, 400)])
        for task in (done, running):
            old = utcnow() - timedelta(days=100)
            session.add_all(
                [
                    TaskEvent(task_id=task.id, kind="status", data={}, created_at=old),
                    TaskEvent(task_id=task.id, kind="final", data={}),
                ]
            )

    async with api_client(settings, "ada", "acme") as api:
        bad = await api.patch(f"/api/v1/orgs/{acme}", json={"qa_retention_days": 0})
        assert bad.status_code == 422 and "qa_retention_days" in bad.text
        assert (await api.patch(f"/api/v1/orgs/{acme}", json={})).status_code == 422
        response = await api.patch(f"/api/v1/orgs/{acme}", json={"qa_retention_days": 30, "event_retention_days": 90})
        assert response.status_code == 200, response.text
        assert (response.json()["qa_retention_days"], response.json()["name"]) == (30, "acme")

        async with running_workers(temporal_env.client, ctx):
            result = await temporal_env.client.execute_workflow(
                RetentionWorkflow.run,
                RetentionInput(reason="test"),
                id="retention-test",
                task_queue=TASK_QUEUE_WORKFLOWS,
            )
            assert [(p.org_id, p.qa_entries, p.task_events) for p in result.pruned] == [(acme, 1, 1)]
            # the old entry and the finished task's old event are gone; the running task keeps its events
            assert counts(ctx, acme) == (1, 3) and counts(ctx, other)[0] == 1
            retention = (await api.get(f"/api/v1/orgs/{acme}/retention")).json()
            assert retention["interval_hours"] == 6 and retention["qa_retention_days"] == 30
            assert [(r["qa_entries"], r["task_events"]) for r in retention["runs"]] == [(1, 1)]

            # the schedule: made once, its interval kept in line with the setting, and it really starts passes
            await ensure_schedule(temporal_env.client, settings)
            await ensure_schedule(temporal_env.client, settings)
            handle = temporal_env.client.get_schedule_handle(RETENTION_SCHEDULE_ID)
            assert [i.every for i in (await handle.describe()).schedule.spec.intervals] == [timedelta(hours=6)]
            await ensure_schedule(temporal_env.client, settings.model_copy(update={"retention_interval_hours": 12}))
            assert [i.every for i in (await handle.describe()).schedule.spec.intervals] == [timedelta(hours=12)]
            await handle.trigger()

            def runs() -> int:
                with ctx.sessions() as session:
                    return session.scalar(select(func.count()).select_from(RetentionRun)) or 0

            await poll_until(runs, lambda n: n == 2, timeout=30, what="the scheduled retention pass")
            await handle.delete()
    async with api_client(settings, "bob", "globex") as api:
        assert (await api.get(f"/api/v1/orgs/{acme}/retention")).status_code == 404
        assert (await api.get(f"/api/v1/orgs/{other}/retention")).json()["runs"] == []
