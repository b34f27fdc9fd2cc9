"""The task event stream over real HTTP (uvicorn) with a real SSE client (httpx-sse): a follower sees the state, every
status change, each iteration's score and the end; resuming with Last-Event-ID misses nothing and repeats nothing; a
late follower gets the state and the end at once; another organization's task is not found."""

from __future__ import annotations

import asyncio
import json

import httpx
from httpx_sse import aconnect_sse

from activities.context import ActivityContext
from api.main import create_app
from cli.users import create_user
from core.access import Role
from db.models import TaskEvent
from services import task_events
from services.identity import token_pair
from testkit.api import TEST_PASSWORD, create_task, upload, with_temporal
from testkit.documents import write_dataset
from testkit.factories import make_task
from testkit.phases import FakePhases, running_workers
from testkit.servers import serving


def bearer(settings, username: str, org: str, role: Role = Role.MEMBER) -> dict[str, str]:
    setup = create_user(settings, username, TEST_PASSWORD, org, role)
    return {"Authorization": f"Bearer {token_pair(settings, setup.user, setup.org.id, role).access_token}"}


async def follow(
    client: httpx.AsyncClient,
    task_id: str,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    connected: asyncio.Event | None = None,
) -> list[tuple[int, str, dict]]:
    """(id, kind, data) of each event until the server ends the stream (or `stop_after` events: the client hangs up);
    `connected` is set once the first event has arrived."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    seen = []
    async with aconnect_sse(client, "GET", f"/api/v1/tasks/{task_id}/events", headers=headers) as source:
        assert source.response.status_code == 200 and source.response.headers["content-type"].startswith(
            "text/event-stream"
        )
        async for event in source.aiter_sse():
            seen.append((int(event.id), event.event, json.loads(event.data)))
            if connected is not None:
                connected.set()
            if stop_after is not None and len(seen) == stop_after:
                break
    return seen


async def test_a_follower_sees_every_change_to_the_end_and_resumes_where_it_left(temporal_env, settings, tmp_path):
    settings = with_temporal(settings, temporal_env, event_poll_seconds=0.1)
    ctx = ActivityContext.from_settings(settings)
    owner = bearer(settings, "follower", "events-org")
    fakes = FakePhases(ctx, step_seconds=0.05, train_steps=10)
    async with running_workers(temporal_env.client, ctx, fakes.activities()):
        with serving(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url.removesuffix("/v1"), headers=owner, timeout=60) as api:
                dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
                task_id = (
                    await create_task(
                        api,
                        "continuous",
                        {
                            "task_name": "followed",
                            "dataset_id": dataset["dataset_id"],
                            "max_iterations": 2,
                            "performance_threshold": 0.99,
                        },
                    )
                )["task_id"]

                connected = asyncio.Event()
                following = asyncio.ensure_future(follow(api, task_id, connected=connected))
                await asyncio.wait_for(connected.wait(), 30)  # the follower has the snapshot: it will see every change
                assert (await api.post(f"/api/v1/tasks/{task_id}/start")).status_code == 202
                events = await asyncio.wait_for(following, 60)

                first_id, kind, data = events[0]
                assert kind == "snapshot" and data["task"]["status"] == "PENDING" and data["task"]["task_id"] == task_id
                statuses = [d["status"] for _, k, d in events if k == "status"]
                assert statuses == [
                    "OPTIMIZING",
                    "TRAINING",
                    "EVALUATING",
                    "LOOPING",
                    "OPTIMIZING",
                    "TRAINING",
                    "EVALUATING",
                    "COMPLETED",
                ]
                scores = [(d["iteration"], d["score"], d["baseline_score"]) for _, k, d in events if k == "score"]
                assert scores == [(1, 0.3, 0.1), (2, 0.5, 0.1)]
                assert (
                    events[-1][1] == "final"
                    and events[-1][2]["status"] == "COMPLETED"
                    and events[-1][2]["report_available"]
                )
                ids = [i for i, _, _ in events[1:]]
                assert ids == sorted(set(ids)) and ids[0] > first_id

                # a dropped connection resumes from the last event it saw: the rest, once each
                middle = events[4][0]
                assert await follow(api, task_id, last_event_id=middle) == [e for e in events if e[0] > middle]
                # one that connects after the end gets the state and the end at once
                late = await follow(api, task_id)
                assert [k for _, k, _ in late] == ["snapshot", "final"] and late[0][2]["task"]["status"] == "COMPLETED"
                assert late[0][0] == late[1][0] == events[-1][0]

                # a task cancelled before it ever started ends its stream too
                never = (
                    await api.post(
                        "/api/v1/tasks/standard", json={"task_name": "never", "dataset_id": dataset["dataset_id"]}
                    )
                ).json()["task_id"]
                assert (await api.post(f"/api/v1/tasks/{never}/cancel")).status_code == 202
                assert [(k, d.get("task", d)["status"]) for _, k, d in await follow(api, never)] == [
                    ("snapshot", "CANCELLED"),
                    ("final", "CANCELLED"),
                ]

            async with httpx.AsyncClient(
                base_url=url.removesuffix("/v1"), headers=bearer(settings, "stranger", "other-org"), timeout=10
            ) as other:
                response = await other.get(f"/api/v1/tasks/{task_id}/events")
                assert response.status_code == 404 and response.json()["detail"] == f"task {task_id} not found"
                assert (await other.get("/api/v1/tasks/nope/events")).status_code == 404
            async with httpx.AsyncClient(base_url=url.removesuffix("/v1"), timeout=10) as anonymous:
                assert (await anonymous.get(f"/api/v1/tasks/{task_id}/events")).status_code == 401
            async with httpx.AsyncClient(base_url=url.removesuffix("/v1"), headers=owner, timeout=10) as api:
                bad = await api.get(f"/api/v1/tasks/{task_id}/events", headers={"Last-Event-ID": "yesterday"})
                assert bad.status_code == 422 and "last-event-id" in json.dumps(bad.json()["detail"])


def test_progress_is_written_at_most_once_per_interval(settings):
    ctx = ActivityContext.from_settings(settings)
    task_id = make_task(ctx).id
    record = ctx.progress_recorder(task_id, 1, "TRAINING")
    for step in range(1, 6):  # within one interval: the first, and the last step
        record(stage="training", step=step, total_steps=5, loss=1.0 / step)
    record(stage="saving")  # a new stage
    record(stage="saving")
    every = task_events.ProgressRecorder(ctx.sessions, task_id, 1, "TRAINING", interval=0)
    every(stage="training", step=6, total_steps=9)
    with ctx.sessions() as session:
        rows = session.query(TaskEvent).filter_by(task_id=task_id).order_by(TaskEvent.id).all()
    assert [(r.kind, r.data["stage"], r.data.get("step")) for r in rows] == [
        ("progress", "training", 1),
        ("progress", "training", 5),
        ("progress", "saving", None),
        ("progress", "training", 6),
    ]
    assert rows[0].data["phase"] == "TRAINING" and rows[0].data["iteration"] == 1 and "at" in rows[0].data
