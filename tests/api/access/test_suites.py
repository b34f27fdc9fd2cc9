"""Scenario suites and their runs belong to one organization: another one finds nothing of them (and may use the same
names), a viewer reads but neither writes nor runs, a client cannot set what the server owns, and a suite's size is
bounded."""

from __future__ import annotations

from testkit.world import SUITE_CASES, assert_org_a_untouched, assert_org_b_finds_nothing_of


async def test_org_b_cannot_reach_org_a_suites_or_their_runs(world):
    await assert_org_b_finds_nothing_of(world, "suites")
    assert (await world.other.get("/api/v1/suites")).json()["total"] == 0
    # org B's own suite of the same name sees none of org A's runs, nor can it read one through its own name
    assert (await world.other.post("/api/v1/suites", json={"name": "a-suite", "cases": SUITE_CASES})).status_code == 201
    assert (await world.other.get("/api/v1/suites/a-suite/runs")).json()["total"] == 0
    stolen = await world.other.get(f"/api/v1/suites/a-suite/runs/{world.ids['run_id']}")
    assert stolen.status_code == 404 and "not found" in stolen.json()["detail"]
    # nor run org B's suite against org A's model
    run = await world.other.post("/api/v1/suites/a-suite/runs", json={"model": f"{world.ids['model_name']}@1"})
    assert run.status_code == 404, run.text
    await assert_org_a_untouched(world)


async def test_a_viewer_reads_suites_and_runs_but_changes_and_runs_nothing(world):
    suite = f"/api/v1/suites/{world.ids['suite_name']}"
    assert (await world.viewer.get(suite)).json()["case_count"] == 2
    assert (await world.viewer.get(f"{suite}/runs/{world.ids['run_id']}")).json()["passed"] == 2
    compared = (await world.viewer.get(f"{suite}/compare")).json()
    assert compared["counts"] == {"fixed": 1, "broken": 0, "still_wrong": 0, "still_right": 1}
    assert compared["after"]["run_id"] == world.ids["run_id"]
    for method, path, body in (
        ("POST", "/api/v1/suites", {"name": "v", "cases": SUITE_CASES}),
        ("POST", f"{suite}/versions", {"cases": SUITE_CASES}),
        ("POST", f"{suite}/runs", {"model": f"{world.ids['model_name']}@1"}),
    ):
        response = await world.viewer.request(method, path, json=body)
        assert response.status_code == 403 and "models:write" in response.json()["detail"], f"{path}: {response.text}"
    await assert_org_a_untouched(world)


async def test_server_owned_fields_cannot_be_set(world):
    for extra in ({"version": 7}, {"content_hash": "0" * 64}, {"org_id": world.b_ids["org_id"]}, {"created_by": "x"}):
        response = await world.owner.post("/api/v1/suites", json={"name": "mass", "cases": SUITE_CASES, **extra})
        assert response.status_code == 422, f"{extra}: {response.text}"
    response = await world.owner.post(
        "/api/v1/suites/a-suite/runs", json={"model": f"{world.ids['model_name']}@1", "status": "COMPLETED"}
    )
    assert response.status_code == 422
    await assert_org_a_untouched(world)


async def test_a_suite_is_bounded_in_cases_text_and_upload_size(world):
    case = SUITE_CASES[0]
    many = [{**case, "id": f"c{i}"} for i in range(501)]
    assert (await world.owner.post("/api/v1/suites", json={"name": "big", "cases": many})).status_code == 422
    long = [{**case, "prompt": "x" * 8001}]
    response = await world.owner.post("/api/v1/suites", json={"name": "long", "cases": long})
    assert response.status_code == 422 and "case 'secret': 'prompt'" in response.json()["detail"]
    huge = await world.owner.post(
        "/api/v1/suites/import", files={"file": ("huge.jsonl", b" " * (5 * 1024 * 1024 + 1))}, data={"name": "huge"}
    )
    assert huge.status_code == 413, huge.text
    assert (await world.owner.get("/api/v1/suites")).json()["total"] == 1
    await assert_org_a_untouched(world)
