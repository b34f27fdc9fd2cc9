"""The lineage graph through the HTTP API, on the real database and object store: from a document and an uploaded
dataset, through its versions, a task and its iterations, the registered version its adapter became, the alias that
serves it and the answers it gave, to the feedback dataset made of them; upstream and downstream of any node, and
another organization's node is not found."""

from __future__ import annotations

import io
import json

import pytest

from activities.context import ActivityContext
from core.access import Role
from db.models import MLTask, ModelAlias, QAEntry, RegisteredModel, new_id
from services import knowledge, qa
from services.qa import HistoryFilter
from storage.object_store import put_bytes
from testkit.api import api_client
from testkit.factories import version_row
from testkit.servers import free_port

ROWS = [
    {"question": "Which port does the web console use?", "answer": "The web console listens on port 7410."},
    {"question": "How long is the grace period?", "answer": "Unpaid plans keep working for a 15-day grace period."},
]


@pytest.fixture
def offline_settings(settings):
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


def edges(graph: dict) -> set[tuple[str, str]]:
    return {(f"{e['from_kind']}:{e['from_id']}", f"{e['to_kind']}:{e['to_id']}") for e in graph["edges"]}


async def test_the_graph_from_documents_and_data_to_answers_and_back(offline_settings):
    settings = offline_settings
    ctx = ActivityContext.from_settings(settings)
    async with api_client(settings, "ada", "acme") as api:
        org_id = (await api.get("/api/v1/auth/me")).json()["org_id"]
        upload = await api.post(
            "/api/v1/datasets",
            files={"file": ("faq.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS).encode())},
            data={"name": "faq"},
        )
        dataset_id = upload.json()["dataset_id"]
        row_id = (await api.get(f"/api/v1/datasets/{dataset_id}/versions/1/rows")).json()["items"][0]["row_id"]
        annotated = await api.post(
            f"/api/v1/datasets/{dataset_id}/annotations",
            json={"reason": "tag", "edits": [{"row_id": row_id, "add_tags": ["ports"]}]},
        )
        assert annotated.status_code == 201
        with ctx.sessions() as session:
            kb = knowledge.create_knowledge_base(
                session, settings, name="docs", description=None, org_id=org_id, created_by=None
            )
            document = knowledge.store_document(
                session, ctx.store, settings, kb, stream=io.BytesIO(b"# Ports\n\n7410.\n"), filename="ports.md",
                created_by=None,
            ).document  # fmt: skip
            knowledge.store_document(
                session, ctx.store, settings, kb, stream=io.BytesIO(b"# Ports\n\n7410 and 7411.\n"),
                filename="ports.md", created_by=None,
            )  # fmt: skip
            knowledge.store_document(
                session, ctx.store, settings, kb, stream=io.BytesIO(b"# Ports\n\n7410, 7411, 7412.\n"),
                filename="ports.md", created_by=None,
            )  # fmt: skip
            task = MLTask(
                id=new_id(), name="tuned", mode="STANDARD", status="COMPLETED", model_name="smollm2-135m-instruct",
                dataset_id=dataset_id, dataset_version=2, org_id=org_id, current_iteration=2, max_iterations=2,
                hyperparameters={}, knowledge_base_id=kb.id,
            )  # fmt: skip
            child = MLTask(
                id=new_id(), name="re-trained", mode="STANDARD", status="PENDING", model_name="smollm2-135m-instruct",
                dataset_id=dataset_id, dataset_version=2, org_id=org_id, current_iteration=0, max_iterations=1,
                hyperparameters={}, parent_task_id=task.id,
            )  # fmt: skip
            model = RegisteredModel(id=new_id(), org_id=org_id, name="bot", base_model="smollm2-135m-instruct")
            for row in (task, child, model):
                session.add(row)
                session.flush()
            put_bytes(ctx.store, f"models/{task.id}/iter-2/adapter/adapter_config.json", b"{}")
            version = version_row(
                model_id=model.id, org_id=org_id, number=1, task_id=task.id,
                adapter_key=f"models/{task.id}/iter-2/adapter/",
            )  # fmt: skip
            version.iteration = 2
            session.add(version)
            session.flush()
            session.add(ModelAlias(model_id=model.id, name="production", version_id=version.id))
            entry = QAEntry(
                org_id=org_id, conversation_id="c", model="bot@1", model_version_id=version.id,
                messages=[{"role": "user", "content": ROWS[0]["question"]}], answer="Port 7410.", rating="up",
                prompt_tokens=1, completion_tokens=1, latency_ms=1,
            )  # fmt: skip
            session.add(entry)
            session.commit()
            feedback = qa.export_dataset(
                session, ctx.store, settings, org_id=org_id, name="feedback", where=HistoryFilter(), created_by=None
            )
            ids = {"doc": document.id, "kb": kb.id, "task": task.id, "child": child.id, "version": "bot@1"}
            ids |= {"entry": entry.id, "feedback": feedback.id}

        # from one answer: everything it came from, and the feedback dataset made of it
        graph = (await api.get(f"/api/v1/lineage/qa_answer/{ids['entry']}")).json()
        assert graph["root"] == {"kind": "qa_answer", "id": ids["entry"], "label": "answer of bot@1"}
        assert edges(graph) == {
            (f"document_version:{ids['doc']}@1", f"document_version:{ids['doc']}@2"),  # replaced twice: v3 is current
            (f"document_version:{ids['doc']}@2", f"document:{ids['doc']}"),
            (f"document:{ids['doc']}", f"knowledge_base:{ids['kb']}"),
            (f"knowledge_base:{ids['kb']}", f"task:{ids['task']}"),
            (f"dataset_version:{dataset_id}@1", f"dataset_version:{dataset_id}@2"),
            (f"dataset_version:{dataset_id}@2", f"task:{ids['task']}"),
            (f"task:{ids['task']}", f"iteration:{ids['task']}:2"),
            (f"iteration:{ids['task']}:2", f"model_version:{ids['version']}"),
            (f"model_version:{ids['version']}", f"qa_answer:{ids['entry']}"),
            (f"qa_answer:{ids['entry']}", f"dataset_version:{ids['feedback']}@1"),
        }
        # from the first dataset version: everything downstream of it
        graph = (await api.get(f"/api/v1/lineage/dataset_version/{dataset_id}@1")).json()
        labels = {n["label"] for n in graph["nodes"]}
        assert {"faq v1", "faq v2", "tuned", "re-trained", "tuned iteration 1", "tuned iteration 2"} <= labels
        assert {"bot@1", "bot@production", "answer of bot@1", "feedback v1"} <= labels
        assert (f"task:{ids['task']}", f"task:{ids['child']}") in edges(graph) and not graph["truncated"]
        # from the alias: the version it serves and what made that version
        graph = (await api.get("/api/v1/lineage/alias/bot:production")).json()
        assert (f"model_version:{ids['version']}", "alias:bot:production") in edges(graph)
        assert f"document:{ids['doc']}" in {f"{n['kind']}:{n['id']}" for n in graph["nodes"]}

        for path, status in (
            (f"/api/v1/lineage/dataset_version/{dataset_id}@3", 404),
            (f"/api/v1/lineage/document_version/{ids['doc']}@3", 404),  # the current version is the document
            (f"/api/v1/lineage/document_version/{ids['doc']}@0", 404),
            (f"/api/v1/lineage/iteration/{ids['task']}:3", 404),
            ("/api/v1/lineage/alias/bot:canary", 404),
            (f"/api/v1/lineage/model/{ids['version']}", 422),
        ):
            response = await api.get(path)
            assert response.status_code == status, (path, response.text)
    async with api_client(settings, "eve", "globex", Role.OWNER) as other:
        for kind, node in (
            ("qa_answer", ids["entry"]),
            ("task", ids["task"]),
            ("document", ids["doc"]),
            ("document_version", f"{ids['doc']}@1"),
        ):
            response = await other.get(f"/api/v1/lineage/{kind}/{node}")
            assert response.status_code == 404 and "not found" in response.json()["detail"]
