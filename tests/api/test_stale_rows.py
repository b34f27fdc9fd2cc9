"""Rows a new document version contradicts, through the API with real workers: uploading a changed document marks
exactly the contradicted rows of the dataset a grounded task uses stale, in a new version by the system that says what
changed; the knowledge base lists them; a user confirms one and corrects another with annotations, and the list
follows."""

from __future__ import annotations

import json

import pytest

from activities.context import ActivityContext
from activities.registry import RegistryActivities
from activities.retraining import RetrainingActivities
from db.models import MLTask, PromotionGate, RegisteredModel, new_id
from ml.examples import Example, record_checks
from ml.optimizer import Splits
from schemas.workflow_io import GateAdapter, GateEvaluateInput, GateTestSet, StartIncrementalInput
from services import staleness
from services.promotion import ancestor_tasks, gate_input
from storage.keys import first_splits_key
from testkit.api import api_client, create_task, upload, wait_for_knowledge_base, with_temporal
from testkit.factories import make_task, version_row
from testkit.phases import running_workers
from testkit.polling import poll_until
from testkit.stale_documents import CHANGED, GUIDE, ROWS


@pytest.fixture
def online(settings, temporal_env):
    return with_temporal(settings, temporal_env, knowledge_settle_seconds=0.3)


async def test_a_changed_document_marks_exactly_the_contradicted_rows_stale_until_a_user_resolves_them(
    online, temporal_env, tmp_path
):
    ctx = ActivityContext.from_settings(online)
    path = tmp_path / "faq.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    async with running_workers(temporal_env.client, ctx), api_client(online) as api:
        kb_id = (await api.post("/api/v1/knowledge-bases", json={"name": "guide"})).json()["knowledge_base_id"]
        base = f"/api/v1/knowledge-bases/{kb_id}"
        first = await api.post(f"{base}/documents", files={"file": ("guide.md", GUIDE.encode())})
        assert first.status_code == 202, first.text
        await wait_for_knowledge_base(api, kb_id, version=1)
        dataset_id = (await upload(api, path, name="faq"))["dataset_id"]
        parent = await create_task(
            api, "standard", {"task_name": "t", "dataset_id": dataset_id, "knowledge_base_id": kb_id}
        )
        # as a finished task leaves it: its locked splits, made from version 1
        by_id = {r["id"]: Example(r["question"], r["answer"], checks=record_checks(r) or []) for r in ROWS}
        splits = Splits(
            train=[by_id["sync-port"], by_id["api-port"]],
            feedback=[by_id["drives"]],
            test=[by_id["web-port"], by_id["f2-price"], by_id["ram"]],
        )
        ctx.write_json(first_splits_key(parent["task_id"]), splits.to_json())
        with ctx.sessions.begin() as session:
            session.get_one(MLTask, parent["task_id"]).status = "COMPLETED"
        assert (await api.get(f"{base}/stale-rows")).json() == {"knowledge_base_id": kb_id, "items": [], "total": 0}

        second = await api.post(f"{base}/documents", files={"file": ("guide.md", CHANGED.encode())})
        assert second.status_code == 202 and second.json()["version"] == 2, second.text
        await wait_for_knowledge_base(api, kb_id, version=2)
        listed = await poll_until(
            lambda: api.get(f"{base}/stale-rows"),
            lambda r: r.json()["total"] > 0,
            timeout=60,
            interval=0.3,
            what="stale rows listed",
        )
        items = {i["row_id"]: i for i in listed.json()["items"]}
        assert set(items) == {"web-port", "f2-price", "ram"}
        port = items["web-port"]
        assert (port["old_value"], port["new_value"], port["state"]) == ("7410", "7420", "stale")
        assert port["new_sentence"] == "The web console is served over HTTPS on TCP port 7420."
        assert (port["document_name"], port["document_version"], port["knowledge_base_version"]) == ("guide.md", 2, 2)
        assert (port["dataset_id"], port["marked_in_version"], port["head_version"]) == (dataset_id, 2, 2)
        assert (items["f2-price"]["old_value"], items["f2-price"]["new_value"]) == ("$499", "$549")
        assert (items["ram"]["old_value"], items["ram"]["new_value"]) == ("4 GB", "8 GB")
        # each with the correction the change proposes, which the row does not take until a user accepts it
        assert port["proposed_answer"] == "Open TCP port 7420, the web console's port."
        assert [(c["type"], c["value"]) for c in port["proposed_checks"]] == [("number", 7420)]
        assert items["f2-price"]["proposed_answer"] == "The FerroBox F2 costs $549, without drives."
        assert items["f2-price"]["proposed_checks"][0]["values"] == ["$549", "549 dollars"]

        # the marking is a version of the dataset by the system, saying what changed
        versions = (await api.get(f"/api/v1/datasets/{dataset_id}/versions")).json()
        marking = versions["items"][-1]
        assert (versions["head"], marking["kind"], marking["created_by"]) == (2, "annotation", None)
        assert (
            "guide.md v2" in marking["reason"]
            and "7410 → 7420" in marking["reason"]
            and "$499 → $549" in (marking["reason"])
        )
        assert marking["changes"]["changed"] == 3
        rows = {
            r["row_id"]: r for r in (await api.get(f"/api/v1/datasets/{dataset_id}/versions/2/rows")).json()["items"]
        }
        assert rows["web-port"]["excluded"] and rows["web-port"]["tags"] == ["stale"]
        assert not rows["drives"]["excluded"] and not rows["api-port"]["excluded"]

        # a user confirms one and corrects the other: a new version each, with who and why
        confirmed = await api.post(
            f"/api/v1/datasets/{dataset_id}/annotations",
            json={
                "reason": "the F2 price row is checked by hand: keep it",
                "base_version": 2,
                "edits": [{"row_id": "f2-price", "remove_tags": ["stale"], "excluded": False}],
            },
        )
        assert confirmed.status_code == 201, confirmed.text
        corrected = await api.post(
            f"/api/v1/datasets/{dataset_id}/annotations",
            json={
                "reason": "the web console moved to 7420",
                "edits": [
                    {
                        "row_id": "web-port",
                        "answer": "Open TCP port 7420, the web console's port.",
                        "checks": [{"type": "number", "value": 7420}],
                        "remove_tags": ["stale"],
                        "excluded": False,
                    }
                ],
            },
        )
        assert corrected.status_code == 201 and corrected.json()["created_by"], corrected.text
        states = {
            i["row_id"]: (i["state"], i["head_version"]) for i in (await api.get(f"{base}/stale-rows")).json()["items"]
        }
        assert states == {"f2-price": ("confirmed", 4), "web-port": ("corrected", 4), "ram": ("stale", 4)}
        assert [
            i["row_id"] for i in (await api.get(f"{base}/stale-rows", params={"state": "stale"})).json()["items"]
        ] == ["ram"]
        assert (await api.get(f"{base}/stale-rows", params={"state": "corrected"})).json()["items"][0]["row_id"] == (
            "web-port"
        )
        assert (await api.get(f"{base}/stale-rows", params={"state": "lost"})).status_code == 422
        # accepting proposals: a row that is no longer stale, or no reason, is refused, and nothing is written
        refused = await api.post(
            f"{base}/stale-rows/accept-proposals", json={"reason": "r", "row_ids": ["ram", "web-port"]}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"] == f"not a stale row of knowledge base {kb_id}: web-port"
        assert (await api.post(f"{base}/stale-rows/accept-proposals", json={"reason": ""})).status_code == 422
        versions = (await api.get(f"/api/v1/datasets/{dataset_id}/versions")).json()
        assert versions["head"] == 4, versions

        # the task's incremental successor trains and is tested on the head: the stale row left out, the corrected
        # answer taken, the confirmed row as it was
        child_id, _ = RetrainingActivities(ctx)._create_child(
            StartIncrementalInput(parent_task_id=parent["task_id"], knowledge_base_version=2)
        )
        child = (await api.get(f"/api/v1/tasks/{child_id}")).json()
        assert (child["parent_task_id"], child["dataset_version"]) == (parent["task_id"], 4)
        assert parent["dataset_version"] == 1
        inherited = Splits.from_json(ctx.read_json(first_splits_key(child_id)))
        assert [(e.question, e.answer) for e in inherited.test] == [
            ("Which TCP port should I open for the web UI?", "Open TCP port 7420, the web console's port."),
            ("How much does the FerroBox F2 cost?", "The FerroBox F2 costs $499, without drives."),
        ]
        assert inherited.test[0].checks == [
            {"derived": False, "type": "number", "value": 7420.0, "unit": None, "tolerance": 0.0}
        ]
        assert inherited.train == splits.train and inherited.feedback == splits.feedback
        # its report lists them, with their state
        with ctx.sessions() as session:
            notes = staleness.task_stale_rows(session, ctx.store, session.get_one(MLTask, child_id))
        assert {(n.row_id, n.old_value, n.new_value, n.document, n.state) for n in notes} == {
            ("web-port", "7410", "7420", "guide.md", "corrected"),
            ("f2-price", "$499", "$549", "guide.md", "confirmed"),
            ("ram", "4 GB", "8 GB", "guide.md", "stale"),
        }
        # and a gate that asks the parent's own test split asks it as the dataset's head has it
        with ctx.sessions() as session:
            org_id = session.get_one(MLTask, parent["task_id"]).org_id
        asked, _ = RegistryActivities(ctx)._questions(
            GateEvaluateInput("g", org_id, "smollm2-135m-instruct", GateAdapter(1, "a"), None, [], "closed_book", 0.0),
            GateTestSet("v1's test split", first_splits_key(parent["task_id"]), dataset_id=dataset_id),
        )
        assert asked == inherited.test

        # the tag removed but the row kept out: excluded
        kept_out = await api.post(
            f"/api/v1/datasets/{dataset_id}/annotations",
            json={"reason": "RAM: not sure yet, keep it out", "edits": [{"row_id": "ram", "remove_tags": ["stale"]}]},
        )
        assert kept_out.status_code == 201, kept_out.text
        states = {i["row_id"]: i["state"] for i in (await api.get(f"{base}/stale-rows")).json()["items"]}
        assert states == {"f2-price": "confirmed", "web-port": "corrected", "ram": "excluded"}

        # erasing a row takes its stale record with it; erasing the document, every record quoting it
        erased = await api.post(
            "/api/v1/erasures", json={"dataset_id": dataset_id, "row_id": "ram", "reason": "asked to forget it"}
        )
        assert erased.status_code == 201, erased.text
        assert {i["row_id"] for i in (await api.get(f"{base}/stale-rows")).json()["items"]} == {"web-port", "f2-price"}
        document_id = second.json()["document_id"]
        erased = await api.post(
            "/api/v1/erasures/documents",
            json={"knowledge_base_id": kb_id, "document_id": document_id, "reason": "withdrawn"},
        )
        assert erased.status_code == 201, erased.text
        assert (await api.get(f"{base}/stale-rows")).json()["total"] == 0


def test_the_gate_of_an_incremental_version_asks_only_its_own_split_when_production_comes_from_an_ancestor(settings):
    """An incremental task's test split is its ancestor's brought to the dataset's head: the production version of an
    ancestor task adds no second set whose questions still expect the old values; another task's version still does."""
    ctx = ActivityContext.from_settings(settings)
    grandparent = make_task(ctx, org_id="org")
    parent = make_task(ctx, org_id="org", parent_task_id=grandparent.id)
    child = make_task(ctx, org_id="org", parent_task_id=parent.id)
    stranger = make_task(ctx, org_id="org")
    with ctx.sessions.begin() as session:
        model = RegisteredModel(id=new_id(), org_id="org", name="faq", base_model="smollm2-135m-instruct")
        session.add(model)
        session.flush()
        rows = {
            task.id: version_row(model_id=model.id, org_id="org", number=n, task_id=task.id, adapter_key=f"a/{n}")
            for n, task in enumerate((grandparent, child, stranger), start=1)
        }
        session.add_all(rows.values())
        session.flush()
        gate = PromotionGate(
            org_id="org", model_id=model.id, alias="production", candidate_version=2, status="EVALUATING"
        )
        gate.margin, gate.mode = 0.0, "closed_book"
        assert ancestor_tasks(session, child.id) == {parent.id, grandparent.id}
        names = [
            [s.name for s in gate_input(session, settings, gate, rows[child.id], rows[current.id]).test_sets]
            for current in (grandparent, stranger)
        ]
    assert names == [["v2's test split"], ["v2's test split", "v3's test split"]]
    with ctx.sessions() as session:  # each set's questions follow the dataset its task was made from
        sets = gate_input(session, settings, gate, rows[child.id], rows[stranger.id]).test_sets
    assert [s.dataset_id for s in sets] == [child.dataset_id, stranger.dataset_id]
