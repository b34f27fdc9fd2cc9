"""The audit log: another tenant's probes are recorded in its own log, never in ours."""

from __future__ import annotations

from testkit.world import assert_org_a_untouched, assert_org_b_finds_nothing_of


async def test_org_b_probes_are_audited_in_its_own_log_only(world):
    b, ids = world.other, world.ids
    for resource in ("tasks", "datasets", "api_keys", "orgs", "knowledge"):  # B probes every kind of org A's resources
        await assert_org_b_finds_nothing_of(world, resource)
    # A's audit log holds nothing of B's probing, B's holds nothing of A's work
    b_audit = (await b.get("/api/v1/audit", params={"limit": 200})).json()["items"]
    assert b_audit and {e["actor_user_id"] for e in b_audit} == {world.b_ids["user_id"]}
    # failed probes are audited, in B's log
    probe = next(e for e in b_audit if e["action"] == "DELETE /api/v1/api-keys/{key_id}")
    assert (probe["resource_type"], probe["resource_id"], probe["status_code"]) == ("api_key", ids["key_id"], 404)
    a_audit = (await world.owner.get("/api/v1/audit", params={"limit": 200})).json()["items"]
    assert a_audit and {e["actor_user_id"] for e in a_audit} == {world.owner_id}
    await assert_org_a_untouched(world)
