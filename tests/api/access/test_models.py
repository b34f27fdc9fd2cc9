"""Registered models, their versions, aliases, gates and question-answering history belong to one organization:
another one finds nothing of them, a viewer reads but moves nothing, and forcing a promotion is for owners and
admins."""

from __future__ import annotations

from testkit.world import assert_org_a_untouched, assert_org_b_finds_nothing_of


async def test_org_b_cannot_reach_org_a_models(world):
    await assert_org_b_finds_nothing_of(world, "models")
    assert (await world.other.get("/api/v1/models")).json()["total"] == 0
    # registering org A's task under a name org B is free to use still finds no task, and makes no model
    response = await world.other.post("/api/v1/models/b-model/versions", json={"task_id": world.ids["task_id"]})
    assert response.status_code == 404 and f"task {world.ids['task_id']} not found" in response.json()["detail"]
    assert (await world.other.get("/api/v1/models")).json()["total"] == 0
    await assert_org_a_untouched(world)


async def test_a_viewer_reads_models_but_moves_no_alias(world):
    model = f"/api/v1/models/{world.ids['model_name']}"
    assert (await world.viewer.get(f"{model}/aliases")).json()[0]["version"] == 1
    assert (await world.viewer.get(f"{model}/gates/{world.ids['gate_id']}")).json()["status"] == "REFUSED"
    for method, path, body in (
        ("POST", f"{model}/versions/1/promote", {"alias": "staging"}),
        ("POST", f"{model}/aliases/production/rollback", None),
        ("DELETE", f"{model}/versions/1", None),
        ("POST", f"{model}/versions", {"task_id": world.ids["task_id"]}),
    ):
        response = await world.viewer.request(method, path, json=body)
        assert response.status_code == 403 and "models:write" in response.json()["detail"], (
            f"{method} {path}: {response.text}"
        )
    await assert_org_a_untouched(world)


async def test_bad_input_on_models_says_what_is_wrong(world):
    model = f"/api/v1/models/{world.ids['model_name']}"
    for path, body, status, message in (
        (f"{model}/versions/1/promote", {"alias": "production"}, 409, "already points at version 1"),
        (f"{model}/versions/7/promote", {"alias": "staging"}, 404, "has no version 7"),
        (f"{model}/aliases/production/rollback", None, 409, "no previous version"),
        (f"{model}/aliases/nope/rollback", None, 404, "has no alias nope"),
        (f"{model}/versions", {"task_id": world.ids["task_id"]}, 409, "no finished iteration"),
        ("/api/v1/models/bad name!/versions", {"task_id": world.ids["task_id"]}, 422, "model name 'bad name!'"),
    ):
        response = await world.owner.post(path, json=body)
        assert response.status_code == status and message in response.json()["detail"], (
            f"{path}: {response.status_code} {response.text}"
        )
    assert (await world.owner.delete(f"{model}/versions/1")).status_code == 409
    assert (await world.owner.get(f"{model}/versions/0")).status_code == 422
    await assert_org_a_untouched(world)


async def test_org_b_cannot_rate_org_a_answers_or_export_them(world):
    await assert_org_b_finds_nothing_of(world, "qa")
    assert (await world.other.get("/api/v1/qa/history")).json()["total"] == 0
    exported = await world.other.post(
        "/api/v1/qa/datasets", json={"name": "steal", "filter": {"conversation_id": "c-1"}}
    )
    assert exported.status_code == 422 and "rate some answers first" in exported.json()["detail"]
    # a viewer reads the history, but rating is for those who may ask (inference)
    assert (await world.viewer.get("/api/v1/qa/history")).json()["total"] == 1
    rated = await world.viewer.post(f"/api/v1/qa/history/{world.ids['entry_id']}/feedback", json={"rating": "up"})
    assert rated.status_code == 403 and "inference" in rated.json()["detail"]
    await assert_org_a_untouched(world)
