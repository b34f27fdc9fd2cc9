"""Knowledge update: a few facts of the sample's documents change; how soon, and how well, the product serves them.

The real stack in process (a Temporal dev server, the workers, the API over ASGI):

1. a knowledge base from the sample's documents, the sample dataset, and a standard task with the knowledge base and
   the demo's hyperparameters that follows it (`retrain_on_change`), registered and promoted to `production` through
   the gate (forced when the gate refuses: the result says which);
2. `CHANGES`: four facts of two documents change (string replacements), uploaded as new versions of those documents;
3. the followed task re-trains by itself (`RetrainWorkflow`, with the rows the new versions contradict marked stale
   and left out), its version goes before the gate, and the minutes from the upload until the production alias
   serves the new version, and until it answers the changed facts right, are measured;
4. questions: the dataset's rows that ask a changed fact, their checks rewritten to the new value (what a user's
   correction does) = efficacy; two paraphrases per changed fact written here = generalisation; the other questions of
   the task's locked test split (unchanged facts) = retention, the share still right of those right before;
5. three arms answer them at equal settings (the same questions, passages, generation settings), each judged by its
   fact checks: (a) `product`, the re-trained version with retrieval from the new index; (b) `retrieval_only`, the
   old version with the new index; (c) `retrained_closed_book`, the re-trained version asked without passages. Paired
   counts of (a) against (b).

`--quick` runs the same path with the tiny random model on a subset of the sample, shorter waits and fewer steps (a
test's check that the path works; its figures mean nothing).

`--accept-proposals`: a user accepts every stale row's proposed correction (`facts.corrections`) as soon as the new
index is built, within the re-training's quiet period; the re-training then trains on the corrected rows instead of
leaving them out, and the gate asks the corrected test questions. Efficacy then asks rows the re-training trained on
(the edit itself, as knowledge-editing benchmarks measure it); the paraphrases stay unseen.

    python -m bench.knowledge_update [--max-steps N] [--quick] [--out PATH] [--accept-proposals]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from activities.context import ActivityContext
from bench.sample_task import (
    MODEL,
    Setup,
    answers,
    first_version,
    gate_of,
    minutes,
    model_label,
    on_stack,
    passages,
    readable,
    run_loop_bench,
    sample_rows,
    setup,
    share,
    upload_documents,
)
from cli.demo import SAMPLE_DATASET, SAMPLE_KNOWLEDGE
from core.settings import configure_process_environment
from db.models import Dataset
from facts.stats import mcnemar_exact
from ml.evaluator import verdict_of
from ml.examples import Example, examples_from_jsonl
from ml.optimizer import Splits
from storage.keys import first_splits_key, optimized_dataset_id, optimized_prefix
from storage.object_store import get_bytes
from testkit.api import wait_for_knowledge_base, wait_until_done
from testkit.polling import poll_until

TARGET_EFFICACY = 0.9  # issue 19's target: changed facts served with the new value, within 10 minutes of the upload
TARGET_MINUTES = 10.0
TARGET_RETENTION = 0.95
PRODUCT, RETRIEVAL_ONLY, RETRAINED_CLOSED_BOOK = "product", "retrieval_only", "retrained_closed_book"
QUICK_ROWS = 40  # rows besides the changed facts' in --quick


@dataclass(frozen=True)
class Change:
    """One fact of one document changes: the text replaced, the value the rows' checks ask for before and after, which
    rows ask it, and two paraphrased questions about it."""

    name: str
    document: str
    old_text: str
    new_text: str
    old_value: float
    new_value: float
    unit: str | None  # the unit of the rows' `number` checks that ask it ("$", "minutes"; None: any)
    about: str | None  # a word the question of a row that asks it holds (None: any row whose check asks the value)
    paraphrases: tuple[str, str]


PRODUCT_GUIDE, COMMAND_LINE = "ferrolink-product-and-setup.md", "ferrolink-command-line.md"
CHANGES = (
    Change(
        "web console port",
        PRODUCT_GUIDE,
        "served over HTTPS on TCP port 7410.",
        "served over HTTPS on TCP port 7420.",
        7410,
        7420,
        None,
        "web",  # the REST API row also asks 7410: its port did not change
        (
            "On which port do I open the FerroLink web console in a browser?",
            "What TCP port does FerroLink's browser-based admin console listen on?",
        ),
    ),
    Change(
        "FerroBox F4 price",
        PRODUCT_GUIDE,
        "the FerroBox F4 costs $899;",
        "the FerroBox F4 costs $949;",
        899,
        949,
        "$",
        None,
        ("How much does a FerroBox F4 appliance cost?", "What is the price of the four-bay FerroBox?"),
    ),
    Change(
        "FerroBox F2 price",
        PRODUCT_GUIDE,
        "The FerroBox F2 costs $499",
        "The FerroBox F2 costs $549",
        499,
        549,
        "$",
        None,
        ("How much does a FerroBox F2 appliance cost?", "What is the price of the two-bay FerroBox?"),
    ),
    Change(
        "pairing code expiry",
        COMMAND_LINE,
        "Pairing codes expire 10 minutes after",
        "Pairing codes expire 15 minutes after",
        10,
        15,
        "minutes",
        None,
        (
            "How many minutes does a new device have to enter its pairing code?",
            "After how long does a FerroLink pairing code stop working?",
        ),
    ),
)


@dataclass
class Question:
    kind: str  # efficacy | generalisation | retention
    change: str | None  # the changed fact it asks (None: an unchanged one)
    now: Example  # judged by the checks that hold after the update
    before: Example | None  # judged by the checks that held before it (None: a paraphrase, which had none)


def asks(change: Change, question: str, checks: list[dict[str, Any]]) -> bool:
    """Whether a row asks the changed fact: one of its `number` checks asks the old value (in the change's unit)."""
    if change.about and change.about not in question.lower():
        return False
    return any(
        c["type"] == "number"
        and float(c["value"]) == change.old_value
        and (change.unit is None or (c.get("unit") or "") == change.unit)
        for c in checks
    )


def corrected(change: Change, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checks with the old value replaced by the new one: what a user's correction of the row would say."""
    old, new = f"{change.old_value:g}", f"{change.new_value:g}"
    out = []
    for check in checks:
        check = dict(check)
        if check["type"] == "number" and float(check["value"]) == change.old_value:
            check["value"] = change.new_value
        elif "values" in check:
            check["values"] = [v.replace(old, new) for v in check["values"]]
        out.append(check)
    return out


def changed_fact_rows(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[Change]]]:
    """Each row of the dataset that asks one or more changed facts, with those."""
    found = []
    for row in rows:
        if (fields := readable(row)) is not None:
            hits = [c for c in CHANGES if asks(c, fields[0], fields[2])]
            if hits:
                found.append((row, hits))
    return found


def questions(rows: list[dict[str, Any]], test: list[Example]) -> list[Question]:
    """Efficacy (the dataset's rows that ask a changed fact, with corrected checks), generalisation (the paraphrases)
    and retention (the test split's questions about unchanged facts)."""
    out = []
    changed_questions = set()
    for row, hits in changed_fact_rows(rows):
        question, answer, checks = readable(row) or ("", "", [])
        if question in changed_questions:  # the sample's deliberate duplicates are asked once
            continue
        new_checks = checks
        for change in hits:
            new_checks = corrected(change, new_checks)
        changed_questions.add(question)
        out.append(
            Question(
                "efficacy",
                ", ".join(c.name for c in hits),
                Example(question, answer, checks=new_checks),
                Example(question, answer, checks=checks),
            )
        )
    for change in CHANGES:
        for paraphrase in change.paraphrases:
            check = {"type": "number", "value": change.new_value, "unit": change.unit}
            out.append(Question("generalisation", change.name, Example(paraphrase, "", checks=[check]), None))
    for example in test:
        if example.question not in changed_questions and example.checks:
            out.append(Question("retention", None, example, example))
    return out


def verdicts(asked: list[Question], answers: list[str], before: bool = False) -> list[bool | None]:
    """Right or wrong by each question's checks (those that held before the update with `before`)."""
    out = []
    for question, got in zip(asked, answers, strict=True):
        example = question.before if before else question.now
        out.append(None if example is None else verdict_of(example, got)[0])
    return out


def arm_figures(
    asked: list[Question], right: list[bool | None], before: list[bool | None], minutes_to_serving: float | None
) -> dict[str, Any]:
    """Efficacy, generalisation and retention (the share of the unchanged facts right before that are still right,
    and the share right against the share right before), and the minutes until it answers the changed facts right."""
    kinds = {kind: [i for i, q in enumerate(asked) if q.kind == kind] for kind in ("efficacy", "generalisation")}
    retained = [i for i, q in enumerate(asked) if q.kind == "retention"]
    right_before = [i for i in retained if before[i]]
    efficacy = share([right[i] for i in kinds["efficacy"]])
    now_share = share([right[i] for i in retained])["share"]
    before_share = share([before[i] for i in retained])["share"]
    reached = efficacy["share"] is not None and efficacy["share"] >= TARGET_EFFICACY
    return {
        "efficacy": efficacy,
        "generalisation": share([right[i] for i in kinds["generalisation"]]),
        "retention": {
            "still_right": share([right[i] for i in right_before]),
            "share_now": now_share,
            "share_before": before_share,
            "relative": round(now_share / before_share, 4) if now_share is not None and before_share else None,
        },
        "by_change": {
            change.name: share([right[i] for i, q in enumerate(asked) if q.change and change.name in q.change])
            for change in CHANGES
        },
        "minutes_to_serving": minutes_to_serving,
        "minutes_to_right": minutes_to_serving if reached else None,
    }


def paired(first: list[bool | None], second: list[bool | None], indices: list[int]) -> dict[str, Any]:
    """Right/wrong of two arms on the same questions: both, only the first, only the second, neither; exact McNemar."""
    pairs = [(first[i], second[i]) for i in indices if first[i] is not None and second[i] is not None]
    only_first = sum(1 for a, b in pairs if a and not b)
    only_second = sum(1 for a, b in pairs if b and not a)
    return {
        "both_right": sum(1 for a, b in pairs if a and b),
        "only_product": only_first,
        "only_retrieval": only_second,
        "neither": sum(1 for a, b in pairs if not a and not b),
        "mcnemar_p": round(mcnemar_exact(only_first, only_second), 4),
    }


async def accept_all_proposals(api: httpx.AsyncClient, kb_id: str, upload_at: datetime) -> dict[str, Any]:
    """As a user who reads the stale rows during the re-training's quiet period and accepts every proposed correction
    (`POST /api/v1/knowledge-bases/{kb}/stale-rows/accept-proposals`, what `wlops knowledge stale-rows
    --accept-proposals` calls): one annotation per dataset, with the reason."""
    listed = await poll_until(  # the rows are marked once the new index is built, before the re-training starts
        lambda: api.get(f"/api/v1/knowledge-bases/{kb_id}/stale-rows", params={"state": "stale"}),
        lambda r: r.json()["total"] > 0,
        timeout=120,
        interval=0.3,
        what="stale rows listed",
    )
    stale = listed.json()["items"]
    response = await api.post(
        f"/api/v1/knowledge-bases/{kb_id}/stale-rows/accept-proposals",
        json={"reason": "accepted the proposed corrections of the documents' new versions"},
    )
    assert response.status_code == 200, response.text
    return {
        "minutes_after_upload": minutes(upload_at, datetime.now(UTC)),
        "accepted": [
            {k: r[k] for k in ("row_id", "question", "answer", "proposed_answer")}
            for r in stale
            if r["proposed_answer"] is not None
        ],
        "without_proposal": [
            {k: r[k] for k in ("row_id", "question", "answer", "old_value", "new_value")}
            for r in stale
            if r["proposed_answer"] is None
        ],
    }


async def child_of(api: httpx.AsyncClient, task_id: str, timeout: float) -> str:
    async def children() -> list[dict]:
        return [t for t in (await api.get("/api/v1/tasks")).json()["items"] if t["parent_task_id"] == task_id]

    found = await poll_until(children, timeout=timeout, interval=1, what=f"an incremental task of {task_id}")
    return found[0]["task_id"]


def changed_fact_training(ctx: ActivityContext, task_id: str) -> dict[str, Any]:
    """What the incremental task's first iteration added from the statements new since its parent's knowledge-base
    version: the optimization log's figures and the distinct examples (question, the new statement it answers)."""
    dataset_id = optimized_dataset_id(task_id, 1)
    with ctx.sessions() as session:
        row = session.get(Dataset, dataset_id)
        logged = (row.optimization_log or {}) if row is not None else {}
        log, replay = logged.get("changed_facts"), logged.get("replay")
    train = examples_from_jsonl(get_bytes(ctx.store, optimized_prefix(dataset_id) + "train.jsonl"))
    added = {
        (e.question, e.answer)
        for e in train
        if e.lineage and e.lineage[0].get("action") == "generated_from_changed_chunk"
    }
    return {"log": log, "replay": replay, "examples": [{"question": q, "answer": a} for q, a in sorted(added)]}


async def run_bench(
    env: WorkflowEnvironment, data_dir: Path, quick: bool, max_steps: int | None, accept_proposals: bool = False
) -> dict[str, Any]:
    """The whole knowledge update on the Temporal server of `env`, its files in `data_dir`."""
    started = time.perf_counter()
    rows = sample_rows()
    if quick:
        changed = [row for row, _ in changed_fact_rows(rows)]
        rows = changed + [row for row in rows if row not in changed][:QUICK_ROWS]
    run = setup(data_dir, rows, quick, max_steps)
    if accept_proposals and quick:  # the user's review needs a quiet period longer than the quick one second
        run = dataclasses.replace(run, settings={**run.settings, "retrain_quiet_seconds": 20})
    result = await on_stack(env, data_dir, run, functools.partial(knowledge_update, accept_proposals=accept_proposals))
    result["seconds"] = round(time.perf_counter() - started)
    return result


async def knowledge_update(
    api: httpx.AsyncClient, ctx: ActivityContext, run: Setup, dataset_path: Path, accept_proposals: bool = False
) -> dict[str, Any]:
    # 1. the knowledge base, the dataset, a task that follows the knowledge base, promoted to production
    first = await first_version(
        api,
        run,
        dataset_path,
        task_name="FerroLink assistant (follows its documents)",
        retrain_on_change=True,
        bench="knowledge-update",
    )
    kb_id, parent, first_promotion, documents = first.kb_id, first.task, first.promotion, first.documents
    versions = {v["version"]: v for v in (await api.get(f"/api/v1/models/{MODEL}/versions")).json()["items"]}
    test = Splits.from_json(ctx.read_json(first_splits_key(parent["task_id"]))).test
    asked = questions(run.rows, test)
    texts = [q.now.question for q in asked]
    old_passages = await asyncio.to_thread(passages, ctx, kb_id, texts)
    before_rag = await asyncio.to_thread(answers, ctx, run.model_name, versions[1]["adapter_key"], texts, old_passages)
    before_closed = await asyncio.to_thread(answers, ctx, run.model_name, versions[1]["adapter_key"], texts, None)

    # 2. the changed documents, uploaded as new versions
    changed: dict[str, str] = {}
    for change in CHANGES:
        text = changed.get(change.document, documents[change.document].decode())
        assert text.count(change.old_text) == 1, f"{change.name}: {change.old_text!r} is not in {change.document} once"
        changed[change.document] = text.replace(change.old_text, change.new_text)
    upload_at = datetime.now(UTC)
    await upload_documents(api, kb_id, {name: text.encode() for name, text in changed.items()})

    # 3. the index, the incremental task (the rows the new versions contradict are marked stale before it), its gate
    index_ready_at = (await wait_for_knowledge_base(api, kb_id, version=2, timeout=run.timeout))["updated_at"]
    accepted = await accept_all_proposals(api, kb_id, upload_at) if accept_proposals else None
    child_id = await child_of(api, parent["task_id"], run.timeout)
    child = await wait_until_done(api, child_id, timeout=run.timeout)
    assert child["status"] == "COMPLETED", child["error"]
    gate = await gate_of(api, 2, run.timeout)
    [production] = [a for a in (await api.get(f"/api/v1/models/{MODEL}/aliases")).json() if a["alias"] == "production"]
    versions = {v["version"]: v for v in (await api.get(f"/api/v1/models/{MODEL}/versions")).json()["items"]}
    served_at = production["updated_at"] if production["version"] == 2 else None
    to_serving = minutes(upload_at, served_at) if served_at else None

    stale_rows = (await api.get(f"/api/v1/knowledge-bases/{kb_id}/stale-rows")).json()["items"]
    kb = (await api.get(f"/api/v1/knowledge-bases/{kb_id}")).json()
    # a test question that the product found contradicted asks a changed fact: it says nothing about retention
    stale_questions = {r["question"] for r in stale_rows}
    for q in asked:
        if q.kind == "retention" and q.now.question in stale_questions:
            q.kind = "retention_stale"

    # 4. and 5. the arms, on the same questions and the new index's passages
    new_passages = await asyncio.to_thread(passages, ctx, kb_id, texts)
    old, new = versions[1]["adapter_key"], versions[2]["adapter_key"]
    answered = {
        PRODUCT: await asyncio.to_thread(answers, ctx, run.model_name, new, texts, new_passages),
        RETRIEVAL_ONLY: await asyncio.to_thread(answers, ctx, run.model_name, old, texts, new_passages),
        RETRAINED_CLOSED_BOOK: await asyncio.to_thread(answers, ctx, run.model_name, new, texts, None),
    }
    right = {arm: verdicts(asked, got) for arm, got in answered.items()}
    before = {"rag": verdicts(asked, before_rag, before=True), "closed_book": verdicts(asked, before_closed, True)}
    arms = {
        PRODUCT: arm_figures(asked, right[PRODUCT], before["rag"], to_serving),
        RETRIEVAL_ONLY: arm_figures(asked, right[RETRIEVAL_ONLY], before["rag"], minutes(upload_at, index_ready_at)),
        RETRAINED_CLOSED_BOOK: arm_figures(asked, right[RETRAINED_CLOSED_BOOK], before["closed_book"], to_serving),
    }
    indices = {
        kind: [i for i, q in enumerate(asked) if q.kind == kind]
        for kind in ("efficacy", "generalisation", "retention", "retention_stale")
    }
    return {
        "dataset": SAMPLE_DATASET.name,
        "rows": len(run.rows),
        "knowledge_base": str(SAMPLE_KNOWLEDGE.relative_to(SAMPLE_KNOWLEDGE.parents[2])),
        "model": model_label(run),
        "hyperparameters": run.hyperparameters,
        "settings": run.settings,
        "changes": [{"fact": c.name, "document": c.document, "old": c.old_text, "new": c.new_text} for c in CHANGES],
        "questions": {kind: len(i) for kind, i in indices.items()},
        "first_promotion": first_promotion,
        "timeline_minutes": {
            "index_ready": minutes(upload_at, index_ready_at),
            "retraining_started": minutes(upload_at, child["created_at"]),
            "retrained": minutes(upload_at, child["updated_at"]),
            "gate_decided": minutes(upload_at, gate["finished_at"]) if gate["finished_at"] else None,
            "production_serves_new_version": to_serving,
        },
        "gate": {
            "status": gate["status"],
            "reason": gate["reason"],
            "candidate_version": gate["candidate_version"],
            "current_version": gate["current_version"],
            "pooled": (gate["figures"] or {}).get("pooled"),
        },
        "production_version": production["version"],
        "proposed_corrections": accepted,
        "incremental_task": {
            "task_id": child_id,
            "dataset_version": child["dataset_version"],
            "changed_fact_training": await asyncio.to_thread(changed_fact_training, ctx, child_id),
            "knowledge_base_version": versions[2]["knowledge_base_version"],
            "knowledge_base_version_now": kb["version"],
        },
        "before": {
            mode: {
                "efficacy_old_value": share([v[i] for i in indices["efficacy"]]),
                "retention_questions": share([v[i] for i in indices["retention"]]),
            }
            for mode, v in before.items()
        },
        "arms": arms,
        "paired_product_vs_retrieval_only": {
            kind: paired(right[PRODUCT], right[RETRIEVAL_ONLY], i) for kind, i in indices.items()
        },
        "targets": {
            "efficacy_within_10_minutes": {
                "target": f">= {TARGET_EFFICACY} within {TARGET_MINUTES:g} min",
                "holds": arms[PRODUCT]["minutes_to_right"] is not None
                and arms[PRODUCT]["minutes_to_right"] <= TARGET_MINUTES,
            },
            "retention": {
                "target": f">= {TARGET_RETENTION} of before",
                "holds": (arms[PRODUCT]["retention"]["relative"] or 0) >= TARGET_RETENTION,
            },
        },
        # rows that ask a changed fact by the bench's reading and that the product did not mark stale: the re-training
        # learns their old value again
        "efficacy_rows_not_marked_stale": [
            asked[i].now.question for i in indices["efficacy"] if asked[i].now.question not in stale_questions
        ],
        "stale_rows": [
            {k: r[k] for k in ("row_id", "question", "old_value", "new_value", "document_name", "state")}
            for r in stale_rows
        ],
        "answers": [
            {
                "kind": q.kind,
                "change": q.change,
                "question": q.now.question,
                **{f"{arm}": {"answer": answered[arm][i], "right": right[arm][i]} for arm in answered},
                "before_rag": {"answer": before_rag[i], "right": before["rag"][i]},
            }
            for i, q in enumerate(asked)
            if q.kind != "retention"
        ],
    }


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accept-proposals",
        action="store_true",
        help="a user accepts every stale row's proposed correction as soon as the new index is built",
    )


def main() -> None:
    run_loop_bench("knowledge_update", __doc__, run_bench, options)


if __name__ == "__main__":
    configure_process_environment()
    main()
