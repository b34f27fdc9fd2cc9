"""Knowledge bases and their documents belong to one organization: another one finds nothing of them."""

from __future__ import annotations

from testkit.world import assert_org_a_untouched, assert_org_b_finds_nothing_of


async def test_org_b_cannot_reach_org_a_knowledge_bases_documents_or_search(world):
    await assert_org_b_finds_nothing_of(world, "knowledge")
    upload = await world.other.post(
        f"/api/v1/knowledge-bases/{world.ids['kb_id']}/documents", files={"file": ("b.md", b"# B\n\nmine\n")}
    )
    assert upload.status_code == 404 and "not found" in upload.json()["detail"]
    # B's list is its own
    assert (await world.other.get("/api/v1/knowledge-bases")).json()["total"] == 0
    await assert_org_a_untouched(world)


async def test_a_viewer_may_search_but_not_change_a_knowledge_base(world):
    kb = world.ids["kb_id"]
    search = await world.viewer.post(f"/api/v1/knowledge-bases/{kb}/search", json={"query": "secret", "top_k": 3})
    assert search.status_code == 200 and search.json()["results"] == []  # nothing indexed yet (no build ran)
    for method, path in (
        ("POST", "/api/v1/knowledge-bases"),
        ("DELETE", f"/api/v1/knowledge-bases/{kb}"),
        ("DELETE", f"/api/v1/knowledge-bases/{kb}/documents/{world.ids['document_id']}"),
    ):
        response = await world.viewer.request(method, path, json={"name": "x"} if method == "POST" else None)
        assert response.status_code == 403 and "knowledge:write" in response.json()["detail"], (
            f"{method} {path}: {response.text}"
        )
    audit = (await world.owner.get("/api/v1/audit", params={"action": "search"})).json()
    assert audit["total"] == 0  # a search changes nothing, so it is not audited
    await assert_org_a_untouched(world)
