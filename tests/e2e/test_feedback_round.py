"""A feedback round through the HTTP API with real workers and the tiny model: a finished task's version answers
through the serving app, two answers are rated down and corrected (one of them to a question of the task's locked test
split), the corrections become a dataset, and the feedback round trains from the task's adapter on its training split
and on the corrections: twice each, less the one that copies a held-out question. Its version joins the model, and
the lineage leads from the answers to it."""

from __future__ import annotations

import json

from activities.context import ActivityContext
from ml.examples import examples_from_jsonl
from ml.optimizer import CORRECTION_WEIGHT, Splits
from serving.app import create_serving_app
from storage.keys import first_splits_key, optimized_dataset_id, optimized_prefix
from storage.object_store import get_bytes
from testkit.api import anonymous_client, api_client, create_task, upload, wait_until_done, with_temporal
from testkit.documents import write_dataset
from testkit.model import TINY_HYPERPARAMETERS
from testkit.phases import running_workers

USER_QUESTION = "Can I pause the Ferro agent during a backup window?"
CORRECTED = "Yes: run 'ferro agent pause' before the window and 'ferro agent resume' after it."


async def test_a_feedback_round_trains_on_the_corrected_answers_and_never_on_a_held_out_question(
    temporal_env, settings, tiny_model_dir, tmp_path
):
    settings = with_temporal(settings, temporal_env)
    ctx = ActivityContext.from_settings(settings)
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        dataset = await upload(api, write_dataset(tmp_path / "faq.jsonl"))
        parent = await create_task(
            api,
            "standard",
            {
                "task_name": "faq",
                "model_name": tiny_model_dir,
                "dataset_id": dataset["dataset_id"],
                "hyperparameters": TINY_HYPERPARAMETERS,
            },
        )
        early = await api.post(f"/api/v1/tasks/{parent['task_id']}/feedback-rounds", json={"dataset_id": "x"})
        assert early.status_code == 409 and "COMPLETED" in early.json()["detail"]
        await api.post(f"/api/v1/tasks/{parent['task_id']}/start")
        parent = await wait_until_done(api, parent["task_id"])
        assert parent["status"] == "COMPLETED", parent["error"]
        held_out = Splits.from_json(json.loads(get_bytes(ctx.store, first_splits_key(parent["task_id"])))).test[0]

        # users ask the served version; two answers are rated down and corrected
        async with anonymous_client(
            create_serving_app(settings), {"Authorization": api.headers["authorization"]}
        ) as served:
            for question in (USER_QUESTION, held_out.question):
                chat = {"model": "faq@1", "max_tokens": 4, "messages": [{"role": "user", "content": question}]}
                assert (await served.post("/v1/chat/completions", json=chat)).status_code == 200
        entries = (await api.get("/api/v1/qa/history", params={"model": "faq@1"})).json()["items"]
        assert len(entries) == 2
        for entry in entries:
            asked = entry["messages"][-1]["content"]
            corrected = CORRECTED if asked == USER_QUESTION else held_out.answer
            rated = await api.post(
                f"/api/v1/qa/history/{entry['entry_id']}/feedback",
                json={"rating": "down", "corrected_answer": corrected},
            )
            assert rated.status_code == 200, rated.text
        exported = await api.post("/api/v1/qa/datasets", json={"name": "corrections"})
        assert exported.status_code == 201, exported.text
        corrections = exported.json()["dataset_id"]

        rounds = f"/api/v1/tasks/{parent['task_id']}/feedback-rounds"
        for body, status, says in (
            ({"dataset_id": "no-such-dataset"}, 404, "no-such-dataset"),
            ({"dataset_id": corrections, "dataset_version": 2}, 404, "version 2"),
            ({"dataset_id": corrections, "epochs": 3}, 422, "epochs"),
        ):
            refused = await api.post(rounds, json=body)
            assert refused.status_code == status and says in refused.text, refused.text
        started = await api.post(rounds, json={"dataset_id": corrections})
        assert started.status_code == 201, started.text
        child = started.json()
        assert child["parent_task_id"] == parent["task_id"]
        assert (child["corrections_dataset_id"], child["corrections_dataset_version"]) == (corrections, 1)
        again = await api.post(rounds, json={"dataset_id": corrections})
        assert again.status_code == 409 and child["task_id"] in again.json()["detail"]
        child = await wait_until_done(api, child["task_id"])
        assert child["status"] == "COMPLETED", child["error"]
        versions = (await api.get("/api/v1/models/faq/versions")).json()["items"]
        assert {(v["version"], v["task_id"]) for v in versions} == {(1, parent["task_id"]), (2, child["task_id"])}
        graph = (await api.get(f"/api/v1/lineage/task/{child['task_id']}")).json()
        assert (f"{corrections}@1", child["task_id"]) in {(e["from_id"], e["to_id"]) for e in graph["edges"]}

    # what it trained on: the training split and the one correction that asks no held-out question, weighted
    dataset_id = optimized_dataset_id(child["task_id"], 1)
    whole_log = json.loads(get_bytes(ctx.store, optimized_prefix(dataset_id) + "optimization_log.json"))
    log, replay = whole_log["corrections"], whole_log["replay"]
    assert log["trained"] == 1 and log["weight"] == CORRECTION_WEIGHT
    assert log["near_held_out"] == [held_out.question]
    train = examples_from_jsonl(get_bytes(ctx.store, optimized_prefix(dataset_id) + "train.jsonl"))
    learned = [e for e in train if e.origin == "correction"]
    assert [(e.question, e.answer, e.weight) for e in learned] == [(USER_QUESTION, CORRECTED, CORRECTION_WEIGHT)]
    assert learned[0].lineage[-1] == {"action": "corrected_answer", "dataset_id": corrections, "version": 1}
    assert held_out.question not in {e.question for e in train}
    # the iteration reaches max_steps batches: the training set is fitted to them, the correction's two copies
    # included and the rest replayed in the room left, so nothing it holds goes untrained
    budget = TINY_HYPERPARAMETERS["max_steps"] * TINY_HYPERPARAMETERS["batch_size"]
    assert replay["budget_rows"] == budget and 0 < replay["replayed"] < replay["of"]
    assert budget - 1 <= sum(e.copies for e in train) <= budget
