"""The audit log: another tenant's probes are recorded in its own log, never in ours."""

from __future__ import annotations

from tests.api.access.world import assert_org_a_untouched


async def test_org_b_probes_are_audited_in_its_own_log_only(world):
    b, ids = world.other, world.ids
    # B probes org A's tasks, datasets, API keys, organization and members, as each resource's module does
    for method, path in [("GET", f"/api/v1/tasks/{ids['task_id']}"), ("GET", f"/api/v1/tasks/{ids['task_id']}/executions"),
                         ("GET", f"/api/v1/tasks/{ids['task_id']}/report"), ("POST", f"/api/v1/tasks/{ids['task_id']}/start"),
                         ("POST", f"/api/v1/tasks/{ids['task_id']}/pause"), ("POST", f"/api/v1/tasks/{ids['task_id']}/resume"),
                         ("POST", f"/api/v1/tasks/{ids['task_id']}/cancel"), ("GET", f"/api/v1/datasets/{ids['dataset_id']}"),
                         ("GET", f"/api/v1/datasets/{ids['dataset_id']}/preview"), ("DELETE", f"/api/v1/api-keys/{ids['key_id']}"),
                         ("GET", f"/api/v1/orgs/{ids['org_id']}"), ("GET", f"/api/v1/orgs/{ids['org_id']}/members"),
                         ("DELETE", f"/api/v1/orgs/{ids['org_id']}/members/{world.viewer_id}")]:
        response = await b.request(method, path)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
    for mode in ("standard", "continuous"):
        response = await b.post(f"/api/v1/tasks/{mode}", json={"task_name": "steal", "dataset_id": ids["dataset_id"]})
        assert response.status_code == 404 and f"dataset {ids['dataset_id']} not found" in response.json()["detail"]
    response = await b.patch(f"/api/v1/orgs/{ids['org_id']}/members/{world.viewer_id}", json={"role": "owner"})
    assert response.status_code == 404
    response = await b.post(f"/api/v1/orgs/{ids['org_id']}/members", json={"username": "bob", "role": "owner"})
    assert response.status_code == 404
    assert (await b.patch(f"/api/v1/orgs/{ids['org_id']}", json={"name": "pwned"})).status_code == 404
    # A's audit log holds nothing of B's probing, B's holds nothing of A's work
    b_audit = (await b.get("/api/v1/audit", params={"limit": 200})).json()["items"]
    assert b_audit and {e["actor_user_id"] for e in b_audit} == {world.b_ids["user_id"]}
    probe = next(e for e in b_audit if e["action"] == "DELETE /api/v1/api-keys/{key_id}")  # failed probes are audited, in B's log
    assert (probe["resource_type"], probe["resource_id"], probe["status_code"]) == ("api_key", ids["key_id"], 404)
    a_audit = (await world.owner.get("/api/v1/audit", params={"limit": 200})).json()["items"]
    assert a_audit and {e["actor_user_id"] for e in a_audit} == {world.owner_id}
    await assert_org_a_untouched(world)
