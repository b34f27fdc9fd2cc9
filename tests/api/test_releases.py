"""Releases through the API against the real Temporal server and the real control workers: start one (201, one active
per alias: 409), bad plans refused with their reason (422), too little traffic pauses it with the reason, the controls
answer from the workflow's validators (409), promote needs models:force, and every decision is listed with its actor
and audited."""

from __future__ import annotations

from sqlalchemy import select

from activities.context import ActivityContext
from core.access import Role
from db.models import AuditEntry, RegisteredModel, new_id
from testkit.api import api_client, with_temporal
from testkit.factories import version_row
from testkit.phases import running_workers
from testkit.polling import poll_until
from testkit.registry import point

QUICK = {"bake_seconds": 0, "min_requests": 1, "max_wait_seconds": 1, "poll_seconds": 0.2}


def released_model(ctx: ActivityContext, org_id: str) -> RegisteredModel:
    with ctx.sessions() as session:
        model = RegisteredModel(id=new_id(), org_id=org_id, name="bot", base_model="smollm2-135m-instruct")
        session.add(model)
        session.flush()
        for number in (1, 2):
            session.add(
                version_row(
                    model_id=model.id, org_id=org_id, number=number, task_id=new_id(), adapter_key=f"a/{number}/"
                )
            )
        session.commit()
    point(ctx, model, "production", 1)
    return model


async def test_a_release_through_the_api_pauses_resumes_and_aborts(temporal_env, settings):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with (
        running_workers(temporal_env.client, ctx, pools=("control",)),
        api_client(settings, "olga", "rel-org", Role.OWNER) as owner,
        api_client(settings, "mia", "rel-org", Role.MEMBER) as member,
        api_client(settings, "vic", "rel-org", Role.VIEWER) as viewer,
    ):
        org_id = (await owner.get("/api/v1/auth/me")).json()["org_id"]
        released_model(ctx, org_id)
        releases = "/api/v1/models/bot/releases"
        for body, status, message in (
            ({"candidate_version": 2, "steps": [50, 10, 100]}, 422, "weights must rise strictly"),
            ({"candidate_version": 2, "steps": [10, 50]}, 422, "the last step must send 100%"),
            ({"candidate_version": 2, "max_wait_seconds": 5, "bake_seconds": 10}, 422, "max_wait_seconds must be"),
            ({"candidate_version": 1}, 409, "already points at version 1"),
            ({"candidate_version": 9}, 404, "has no version 9"),
            ({"candidate_version": 2, "alias": "staging"}, 404, "has no alias staging"),
        ):
            response = await owner.post(releases, json=body)
            assert response.status_code == status and message in response.json()["detail"], response.text
        assert (await viewer.post(releases, json={"candidate_version": 2})).status_code == 403

        started = await member.post(releases, json={"candidate_version": 2, "steps": [10, 50, 100], **QUICK})
        assert started.status_code == 201, started.text
        release = started.json()
        url = started.headers["location"]
        assert url == f"{releases}/{release['release_id']}"
        assert (release["current_version"], release["candidate_version"], release["steps"]) == (1, 2, [10, 50, 100])
        again = await owner.post(releases, json={"candidate_version": 2})
        assert again.status_code == 409 and "is already" in again.json()["detail"]

        paused = await poll_until(
            lambda: owner.get(url), lambda r: r.json()["status"] == "PAUSED", timeout=60, what="the release paused"
        )
        shown = paused.json()
        assert shown["reason"].startswith("paused at step 1 after 1 s: too little data: current has 0 of 1 requests")
        assert [d["kind"] for d in shown["decisions"]] == ["start", "traffic", "pause"]
        assert shown["decisions"][2]["figures"]["candidate"]["requests"] == 0

        refused = await owner.post(f"{url}/pause")
        assert refused.status_code == 409 and "cannot pause release" in refused.json()["detail"]
        forbidden = await member.post(f"{url}/promote")
        assert forbidden.status_code == 403 and "models:force" in forbidden.json()["detail"]
        assert (await viewer.post(f"{url}/abort")).status_code == 403

        resumed = await member.post(f"{url}/resume", json={"reason": "traffic is back"})
        assert resumed.status_code == 200 and resumed.json()["status"] in ("RUNNING", "PAUSED"), resumed.text
        aborted = await owner.post(f"{url}/abort", json={"reason": "changed my mind"})
        assert aborted.status_code == 200 and aborted.json()["status"] == "ABORTED", aborted.text
        decisions = aborted.json()["decisions"]
        assert decisions[-1]["kind"] == "abort" and decisions[-1]["reason"] == "aborted: changed my mind"
        assert decisions[-1]["candidate_weight"] == 0 and aborted.json()["finished_at"] is not None
        assert "resume" in [d["kind"] for d in decisions]
        finished = await owner.post(f"{url}/resume")
        assert finished.status_code == 409 and "it is ABORTED" in finished.json()["detail"]

        listed = (await viewer.get(releases)).json()
        assert listed["total"] == 1 and listed["items"][0]["status"] == "ABORTED"
        assert (await owner.get("/api/v1/models/bot/aliases")).json()[0]["version"] == 1
        missing = await owner.get(f"{releases}/nope")
        assert missing.status_code == 404 and "release nope of model bot not found" in missing.json()["detail"]
    with ctx.sessions() as session:
        audited = session.scalars(select(AuditEntry.action).where(AuditEntry.resource_id == release["release_id"]))
        assert any("abort: ABORTED, candidate weight 0%" in a for a in audited)
