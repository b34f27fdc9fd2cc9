"""Feedback fixes: answers rated down and corrected in the QA history become a dataset, a feedback round trains on it,
and the bench counts how many of those questions, and of paraphrases of them, are answered right afterwards, and how
much of the rest stays right.

The real stack in process (`bench.sample_task`: a Temporal dev server, the workers, the API over ASGI, the serving app):

1. production traffic is kept out of the dataset: the sample's facts asked in two or more wordings (rows with the same
   checks, polarity aside, and more than unitless numbers), every other one in a fixed order (by a hash of its
   checks); the first wording of each is what users ask, the others are its paraphrases (questions whose answer the
   same checks judge: most reword the question, a few ask another thing with the same answer). Their rows are removed
   from the uploaded dataset;
2. a standard task with the knowledge base and the demo's hyperparameters on the rest, registered and promoted to
   production (forced when the gate refuses: the result says which);
3. users ask the production alias through the serving app (retrieval from the knowledge base, greedy); each answer is
   judged by its row's checks, and each wrong one is rated down with the row's reference answer as its correction;
4. the corrections are exported from the QA history as a dataset, and a feedback round of the task trains on it (from
   the task's adapter, on its locked splits); its version goes before the gate by itself;
5. both versions answer at equal settings (the same questions and passages): the corrected questions (efficacy), their
   paraphrases (generalisation), the users' questions answered right before (kept), and the task's locked test split
   (retention: the share of those right before that are still right). The control is the test split's questions
   that were wrong before: re-training without their corrections fixes that share of them. Paired McNemar tests of
   the two versions on each set, and Fisher's exact test of the corrected questions' fix rate against the control's.

    python -m bench.feedback_fix [--max-steps N] [--quick] [--out PATH]
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from scipy import stats
from temporalio.testing import WorkflowEnvironment

from activities.context import ActivityContext
from bench.sample_task import (
    MODEL,
    Setup,
    adapter_keys,
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
)
from cli.demo import SAMPLE_DATASET
from core.settings import configure_process_environment
from facts.stats import mcnemar_exact
from ml.evaluator import verdict_of
from ml.examples import Example, normalize_text
from ml.optimizer import Splits
from serving.app import create_serving_app
from storage.keys import first_splits_key, optimized_dataset_id, optimized_prefix
from testkit.api import anonymous_client, wait_until_done

QUICK_FACTS = 4  # facts asked by users in --quick
QUICK_ROWS = 40  # dataset rows in --quick


@dataclass(frozen=True)
class Fact:
    """A fact the sample asks in several wordings: users ask the first, the others are its paraphrases."""

    asked: Example
    paraphrases: tuple[Example, ...]


def fact_key(checks: list[dict[str, Any]]) -> str | None:
    """What a row's checks assert, polarity aside; None when that is too weak to call two rows one fact: polarity
    alone, or numbers without a unit alone (the drive bays of an F4 and an upgrade path that takes 4 steps)."""
    kept = sorted((c for c in checks if c["type"] != "polarity"), key=lambda c: json.dumps(c, sort_keys=True))
    if all(c["type"] == "number" and not c.get("unit") for c in kept):
        return None
    return json.dumps(kept, sort_keys=True)


def users_facts(rows: list[dict[str, Any]]) -> tuple[list[Fact], list[dict[str, Any]]]:
    """Every other fact asked in two or more distinct wordings (in the order of a hash of its checks), and the rows
    left for the dataset (every row of those facts removed)."""
    wordings: dict[str, dict[str, Example]] = {}
    row_fact: list[str | None] = []
    for row in rows:
        fields = readable(row)
        key = fact_key(fields[2]) if fields else None
        row_fact.append(key)
        if fields and key:
            question, answer, checks = fields
            wordings.setdefault(key, {}).setdefault(
                normalize_text(question).casefold(), Example(question, answer, checks=checks)
            )
    asked_twice = sorted((k for k, w in wordings.items() if len(w) >= 2), key=lambda k: zlib.crc32(k.encode()))
    chosen = asked_twice[::2]
    facts = [Fact(next(iter(wordings[k].values())), tuple(list(wordings[k].values())[1:])) for k in chosen]
    kept = [row for row, key in zip(rows, row_fact, strict=True) if key not in set(chosen)]
    return facts, kept


async def ask_production(api: httpx.AsyncClient, ctx: ActivityContext, questions: list[str]) -> list[dict[str, Any]]:
    """Each question asked of the production alias through the serving app, one conversation each, greedy; the QA
    history entries they made, in the same order."""
    max_tokens = ctx.settings.max_new_tokens
    async with anonymous_client(
        create_serving_app(ctx.settings), {"Authorization": api.headers["authorization"]}
    ) as served:
        for question in questions:
            chat = {
                "model": MODEL,
                "messages": [{"role": "user", "content": question}],
                "temperature": 0,
                "max_tokens": max_tokens,
            }
            response = await served.post("/v1/chat/completions", json=chat)
            assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = []
    while len(entries) < len(questions):
        page = (await api.get("/api/v1/qa/history", params={"limit": 200, "offset": len(entries)})).json()
        entries += page["items"]
        if not page["items"]:
            break
    by_question = {e["messages"][-1]["content"]: e for e in entries}
    return [by_question[q] for q in questions]


def right_by_checks(examples: list[Example], got: list[str]) -> list[bool | None]:
    return [verdict_of(example, answer)[0] for example, answer in zip(examples, got, strict=True)]


def paired(before: list[bool | None], after: list[bool | None]) -> dict[str, Any]:
    """Right/wrong of the two versions on the same questions: fixed, broken, both right, both wrong; exact McNemar."""
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
    fixed = sum(1 for b, a in pairs if a and not b)
    broken = sum(1 for b, a in pairs if b and not a)
    return {
        "fixed": fixed,
        "broken": broken,
        "still_right": sum(1 for b, a in pairs if a and b),
        "still_wrong": sum(1 for b, a in pairs if not a and not b),
        "mcnemar_p": round(mcnemar_exact(fixed, broken), 4),
    }


def fix_rates(corrected: list[bool | None], control: list[bool | None]) -> dict[str, Any]:
    """The share of the corrected questions right after the round against the share of the control (wrong before,
    not corrected) right after it; Fisher's exact test, one-sided (the corrections fix more)."""
    a, b = sum(1 for r in corrected if r), sum(1 for r in corrected if r is False)
    c, d = sum(1 for r in control if r), sum(1 for r in control if r is False)
    _, p = stats.fisher_exact([[a, b], [c, d]], alternative="greater")
    return {"corrected": share(corrected), "control": share(control), "fisher_p_greater": round(float(p), 4)}


async def feedback_fix(
    api: httpx.AsyncClient, ctx: ActivityContext, run: Setup, dataset_path: Path, facts: list[Fact]
) -> dict[str, Any]:
    # 1. and 2. the task on the dataset without the users' facts, promoted to production
    first = await first_version(
        api, run, dataset_path, task_name="FerroLink assistant", retrain_on_change=False, bench="feedback-fix"
    )
    task_id = first.task["task_id"]

    # 3. users ask; the wrong answers are rated down and corrected
    asked = [fact.asked for fact in facts]
    entries = await ask_production(api, ctx, [e.question for e in asked])
    served_right = right_by_checks(asked, [e["answer"] for e in entries])
    for example, entry, judged in zip(asked, entries, served_right, strict=True):
        if judged is False:
            rated = await api.post(
                f"/api/v1/qa/history/{entry['entry_id']}/feedback",
                json={"rating": "down", "corrected_answer": example.answer},
            )
            assert rated.status_code == 200, rated.text
    corrected_facts = [fact for fact, judged in zip(facts, served_right, strict=True) if judged is False]
    if not corrected_facts:
        raise RuntimeError("production answered every user's question right: nothing to correct")

    # 4. the corrections as a dataset, and a feedback round on it
    exported = await api.post(
        "/api/v1/qa/datasets", json={"name": "FerroLink corrections", "filter": {"rating": "down"}}
    )
    assert exported.status_code == 201, exported.text
    started_at = datetime.now(UTC)
    round_ = await api.post(
        f"/api/v1/tasks/{task_id}/feedback-rounds", json={"dataset_id": exported.json()["dataset_id"]}
    )
    assert round_.status_code == 201, round_.text
    child = await wait_until_done(api, round_.json()["task_id"], timeout=run.timeout)
    assert child["status"] == "COMPLETED", child["error"]
    gate = await gate_of(api, 2, run.timeout)
    log = ctx.read_json(optimized_prefix(optimized_dataset_id(child["task_id"], 1)) + "optimization_log.json")

    # 5. both versions on the same questions and passages
    test = Splits.from_json(ctx.read_json(first_splits_key(task_id))).test
    kept_right = [fact.asked for fact, judged in zip(facts, served_right, strict=True) if judged]
    sets = {
        "corrected": [fact.asked for fact in corrected_facts],
        "paraphrases_of_corrected": [p for fact in corrected_facts for p in fact.paraphrases],
        "asked_right_before": kept_right,
        "test": [e for e in test if e.checks],
    }
    everything = [e for examples in sets.values() for e in examples]
    texts = [e.question for e in everything]
    contexts = await asyncio.to_thread(passages, ctx, first.kb_id, texts)
    keys = await adapter_keys(api)
    got = {
        version: await asyncio.to_thread(answers, ctx, run.model_name, keys[version], texts, contexts)
        for version in (1, 2)
    }
    right = {version: right_by_checks(everything, got[version]) for version in got}
    spans, start = {}, 0
    for name, examples in sets.items():
        spans[name] = range(start, start + len(examples))
        start += len(examples)

    def of(version: int, name: str) -> list[bool | None]:
        return [right[version][i] for i in spans[name]]

    test_wrong_before = [i for i in spans["test"] if right[1][i] is False]
    test_right_before = [i for i in spans["test"] if right[1][i]]
    return {
        "dataset": SAMPLE_DATASET.name,
        "model": model_label(run),
        "hyperparameters": run.hyperparameters,
        "rows_uploaded": len(run.rows),
        "users_facts": len(facts),
        "users_questions_wrong_when_served": len(corrected_facts),
        "served_share_right": share(served_right),
        "first_promotion": first.promotion,
        "feedback_round": {
            "task_id": child["task_id"],
            "minutes_to_trained": minutes(started_at, child["updated_at"]),
            "corrections": log.get("corrections"),
            "replay": log.get("replay"),
        },
        "gate": {
            "status": gate["status"],
            "reason": gate["reason"],
            "pooled": (gate["figures"] or {}).get("pooled"),
        },
        "questions": {name: len(span) for name, span in spans.items()},
        "right": {name: {"before": share(of(1, name)), "after": share(of(2, name))} for name in sets},
        "paired": {name: paired(of(1, name), of(2, name)) for name in sets},
        "retention": {
            "still_right": share([right[2][i] for i in test_right_before]),
            "relative": round(
                (share(of(2, "test"))["share"] or 0) / (share(of(1, "test"))["share"] or 1),
                4,
            ),
        },
        "corrected_against_control": fix_rates(of(2, "corrected"), [right[2][i] for i in test_wrong_before]),
        "answers": [
            {
                "set": name,
                "question": everything[i].question,
                "reference": everything[i].answer,
                "before": {"answer": got[1][i], "right": right[1][i]},
                "after": {"answer": got[2][i], "right": right[2][i]},
            }
            for name in ("corrected", "paraphrases_of_corrected")
            for i in spans[name]
        ],
    }


async def run_bench(env: WorkflowEnvironment, data_dir: Path, quick: bool, max_steps: int | None) -> dict[str, Any]:
    """The whole feedback round on the Temporal server of `env`, its files in `data_dir`."""
    started = time.perf_counter()
    facts, rows = users_facts(sample_rows())
    if quick:
        facts, rows = facts[:QUICK_FACTS], rows[:QUICK_ROWS]
    run = setup(data_dir, rows, quick, max_steps)
    result = await on_stack(env, data_dir, run, lambda api, ctx, run, path: feedback_fix(api, ctx, run, path, facts))
    result["seconds"] = round(time.perf_counter() - started)
    return result


def main() -> None:
    run_loop_bench("feedback_fix", __doc__, run_bench)


if __name__ == "__main__":
    configure_process_environment()
    main()
