"""The `judge` assertion: an organization points its judge at an OpenAI-compatible endpoint on a host the server
allows (422 naming the host otherwise; admins only), its API key sealed and never shown; a suite run on the real
Temporal server with the real activities asks it, and each case's verdict carries the judge's words. The judges are
real HTTP servers of the protocol: one answers from a script (PASS for an answer that names a port), one is
`wlops serve` itself, answering with the tiny model; without a judge the assertion fails, saying so."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from activities.context import ActivityContext
from auth.sealed import unseal
from core.access import Role
from db.models import Organization, QAEntry
from serving.app import create_serving_app
from suites.verdicts import NO_JUDGE
from testkit.api import api_client, with_temporal
from testkit.chat_server import scripted_chat_app
from testkit.model import random_adapters
from testkit.phases import running_workers
from testkit.registry import add_version, new_model
from testkit.servers import serving
from testkit.suites import wait_for_run

CASES = [
    {"id": "port", "prompt": "Which port does the console use?", "judge": {"rubric": "The answer names a port."}},
    {"id": "polite", "prompt": "Say hello.", "judge": {"rubric": "The answer is polite."}},
]


def scripted_judge(messages: list[dict[str, Any]]) -> str:
    """PASS for the port case's rubric, FAIL (in markdown) for any other."""
    asked = messages[-1]["content"]
    assert messages[0]["role"] == "system" and "PASS" in messages[0]["content"]
    assert asked.startswith("Rubric: ") and "Question: " in asked and "Answer: " in asked
    return "PASS: it names a port." if "names a port" in asked else "**FAIL** - not polite enough."


async def test_an_admin_sets_the_judge_on_an_allowed_host_and_its_key_is_sealed(settings):
    settings = settings.model_copy(update={"judge_allowed_hosts": "127.0.0.1, judge.internal"})
    async with (
        api_client(settings, "ada", "judge-org", Role.OWNER) as owner,
        api_client(settings, "mia", "judge-org", Role.MEMBER) as member,
    ):
        org_id = (await owner.get("/api/v1/auth/me")).json()["org_id"]
        judge = f"/api/v1/orgs/{org_id}/judge"
        assert (await owner.get(judge)).json() == {"org_id": org_id, "url": None, "model": None, "api_key_set": False}
        for body, message in (
            ({"url": "http://169.254.169.254/v1", "model": "m"}, "host '169.254.169.254' is not one the server allows"),
            ({"url": "file:///etc/passwd", "model": "m"}, "String should match pattern"),
            ({"url": "http://judge.internal/v1", "model": ""}, "at least 1 character"),
        ):
            refused = await owner.put(judge, json=body)
            assert refused.status_code == 422 and message in refused.text, refused.text
        assert (await member.put(judge, json={"url": "http://judge.internal/v1", "model": "m"})).status_code == 403
        assert (await owner.get(judge)).json()["url"] is None  # nothing half-written

        put = await owner.put(judge, json={"url": "http://judge.internal/v1", "model": "grader", "api_key": "sk-123"})
        assert put.status_code == 200, put.text
        assert put.json() == {
            "org_id": org_id,
            "url": "http://judge.internal/v1",
            "model": "grader",
            "api_key_set": True,
        }
        assert "sk-123" not in put.text and "sk-123" not in (await member.get(judge)).text
        with ActivityContext.from_settings(settings).sessions() as session:
            sealed = session.get_one(Organization, org_id).judge_api_key_sealed
        assert sealed and "sk-123" not in sealed and unseal(settings.secret_key, sealed) == "sk-123"

        assert (await owner.delete(judge)).status_code == 204
        assert (await owner.get(judge)).json()["api_key_set"] is False


async def test_a_suite_run_asks_the_organizations_judge_and_keeps_its_words(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env, judge_allowed_hosts="127.0.0.1")
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        org_id = (await api.get("/api/v1/auth/me")).json()["org_id"]
        model = new_model(ctx, org_id, "tiny-bot", tiny_model_dir)
        [adapter] = random_adapters(tiny_model_dir, tmp_path, ["a"], seed=5)
        add_version(ctx, model, 1, adapter)
        assert (await api.post("/api/v1/suites", json={"name": "judged", "cases": CASES})).status_code == 201

        async def run() -> dict:
            started = await api.post("/api/v1/suites/judged/runs", json={"model": "tiny-bot@1"})
            assert started.status_code == 202, started.text
            return await wait_for_run(api, started.headers["location"])

        unjudged = await run()  # no judge configured: the assertion fails and says why
        with serving(scripted_chat_app("judge-key", scripted_judge)) as url:
            set_judge = {"url": url, "model": "scripted", "api_key": "judge-key"}
            assert (await api.put(f"/api/v1/orgs/{org_id}/judge", json=set_judge)).status_code == 200
            scripted = await run()
        # `wlops serve` as the judge: the serving app on real HTTP, asked with an API key of the organization
        key = await api.post("/api/v1/api-keys", json={"name": "judge", "scopes": ["inference"]})
        with serving(create_serving_app(settings)) as url:
            set_judge = {"url": url, "model": tiny_model_dir, "api_key": key.json()["secret"]}
            assert (await api.put(f"/api/v1/orgs/{org_id}/judge", json=set_judge)).status_code == 200
            served = await run()

    def verdicts(run: dict) -> dict[str, tuple[bool, str]]:
        assert run["status"] == "COMPLETED", run["error"]
        return {r["case_id"]: (r["passed"], r["results"][0]["detail"]) for r in run["results"]}

    assert verdicts(unjudged) == {"port": (False, NO_JUDGE), "polite": (False, NO_JUDGE)}
    assert verdicts(scripted) == {
        "port": (True, "the judge says: PASS: it names a port."),
        "polite": (False, "the judge says: **FAIL** - not polite enough."),
    }
    # the tiny model's random words are neither PASS nor FAIL: the assertion fails and quotes them
    for passed, detail in verdicts(served).values():
        assert not passed and detail.startswith("the judge's reply starts with neither PASS nor FAIL"), detail
    with ctx.sessions() as session:  # the judge's two questions went through serving, recorded as any completion
        asked = session.scalar(select(func.count()).select_from(QAEntry).where(QAEntry.org_id == org_id))
    assert asked == 2
