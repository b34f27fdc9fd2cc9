"""Erasure end to end: a real task (tiny model, real workers, real Temporal server) trains on a dataset whose row is
then erased through the API. Afterwards no stored file holds the row's question or answer (the whole object store is
scanned), every dataset version that held it was rewritten with its hash chain recorded, and the registered version
trained on it is flagged and listed."""

from __future__ import annotations

import json

from activities.context import ActivityContext
from testkit.api import api_client, create_task, upload, wait_until_done, with_temporal
from testkit.documents import write_dataset
from testkit.model import TINY_HYPERPARAMETERS
from testkit.phases import running_workers


def files_mentioning(ctx: ActivityContext, *texts: str) -> list[str]:
    found = []
    for key in ctx.store.list(""):
        data = b"".join(ctx.store.get_stream(key))
        if any(text.encode() in data for text in texts):
            found.append(key)
    return found


async def test_an_erased_row_leaves_every_stored_file_and_flags_the_versions_trained_on_it(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        base = f"/api/v1/datasets/{dataset['dataset_id']}"
        rows = (await api.get(f"{base}/versions/1/rows", params={"limit": 200})).json()["items"]
        erased = rows[5]
        annotated = await api.post(
            f"{base}/annotations", json={"reason": "tag", "edits": [{"row_id": rows[0]["row_id"], "add_tags": ["x"]}]}
        )
        assert annotated.status_code == 201
        task = await create_task(
            api,
            "standard",
            {
                "task_name": "trained on it",
                "dataset_id": dataset["dataset_id"],
                "model_name": tiny_model_dir,
                "hyperparameters": TINY_HYPERPARAMETERS,
                "register_as": "faq-bot",
            },
        )
        assert (await api.post(f"/api/v1/tasks/{task['task_id']}/start")).status_code == 202
        assert (await wait_until_done(api, task["task_id"]))["status"] == "COMPLETED"
        texts = (erased["question"], erased["answer"])
        before = files_mentioning(ctx, *texts)
        assert any(k.startswith("optimized/") for k in before) and any(k.startswith("evaluations/") for k in before)

        response = await api.post(
            "/api/v1/erasures",
            json={"dataset_id": dataset["dataset_id"], "row_id": erased["row_id"], "reason": "the customer asked"},
        )
        assert response.status_code == 201, response.text
        erasure = response.json()
        leftover = files_mentioning(ctx, *texts)
        assert leftover == [], leftover
        assert [(v["version"], v["rows_before"], v["rows_after"]) for v in erasure["dataset_versions"]] == [
            (1, 48, 47),
            (2, 48, 47),
        ]
        assert all(v["content_hash_before"] != v["content_hash_after"] for v in erasure["dataset_versions"])
        assert erasure["model_versions"] == ["faq-bot@1"] and set(before) <= set(erasure["blobs"]) | {
            k for k in before if k.startswith(f"datasets/{dataset['org_id']}/")
        }
        versions = (await api.get(f"{base}/versions")).json()["items"]
        assert [v["content_hash"] for v in versions] == [v["content_hash_after"] for v in erasure["dataset_versions"]]
        assert (await api.get(f"{base}/versions/2/rows", params={"limit": 200})).json()["total"] == 47
        version = (await api.get("/api/v1/models/faq-bot/versions/1")).json()
        assert version["erased_data_at"] is not None
        report = (await api.get(f"/api/v1/tasks/{task['task_id']}/report")).json()
        assert erased["question"] not in json.dumps(report)
        assert [e["erasure_id"] for e in (await api.get("/api/v1/erasures")).json()] == [erasure["erasure_id"]]

        again = await api.post(
            "/api/v1/erasures", json={"dataset_id": dataset["dataset_id"], "row_id": erased["row_id"], "reason": "x"}
        )
        assert again.status_code == 404 and "holds row" in again.json()["detail"]
