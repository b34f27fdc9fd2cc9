"""The promotion gate on the real SmolLM2 weights, through the API, with real activities on a real Temporal server: a
candidate trained on answers whose facts were corrupted (its wording is the references' own, a number changed) is
refused with the figures, and a candidate trained on the right answers is promoted over the base model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from activities.context import ActivityContext
from db.models import RegisteredModel, new_id
from ml.base_model import SMOLLM2_ALIAS, load_model_and_tokenizer
from ml.examples import Example, normalize_text, record_checks, record_to_pair
from ml.optimizer import Splits
from ml.trainer import train_lora
from schemas.workflow_io import Hyperparameters
from storage.object_store import put_dir
from testkit.api import api_client, wait_for_gate, with_temporal
from testkit.factories import version_row
from testkit.phases import running_workers
from testkit.registry import new_model

SAMPLE = Path(__file__).parents[2] / "data" / "sample" / "ferrolink_faq.jsonl"
QUESTIONS = 12


def numeric_questions() -> list[Example]:
    """The sample's first questions whose one check is a number: facts a closed-book base model cannot know."""
    found, seen = [], set()
    for line in SAMPLE.read_text().splitlines():
        record = json.loads(line)
        try:
            question, answer = record_to_pair(record)
            checks = record_checks(record)
        except ValueError:
            continue
        if checks and len(checks) == 1 and checks[0]["type"] == "number" and str(int(checks[0]["value"])) in answer:
            example = Example(normalize_text(question), normalize_text(answer), checks=checks)
            if example.question.casefold() not in seen:
                seen.add(example.question.casefold())
                found.append(example)
    return found[:QUESTIONS]


def corrupted(example: Example) -> Example:
    """The same answer, word for word, but with its number changed: close in wording, wrong in fact."""
    value = int(example.checks[0]["value"])
    return Example(example.question, re.sub(rf"\b{value}\b", str(value * 2 + 1), example.answer, count=1))


def trained_adapter(settings, examples: list[Example], folder: Path) -> Path:
    model, tokenizer = load_model_and_tokenizer(SMOLLM2_ALIAS, settings.model_cache_dir, device="cpu")
    hp = Hyperparameters(
        learning_rate=2e-3, epochs=100, batch_size=6, max_steps=30, max_seq_length=96, lora_r=16, lora_alpha=32, seed=3
    )
    train_lora(model, tokenizer, examples, hp, folder, checkpoint_every=10**6)
    return folder


def register(
    ctx: ActivityContext, org_id: str, model: RegisteredModel, number: int, adapter: Path, splits_key: str
) -> None:
    task_id = new_id()
    adapter_key = f"models/{task_id}/iter-1/adapter/"
    put_dir(ctx.store, adapter_key, adapter)
    with ctx.sessions() as session:
        session.add(
            version_row(
                model_id=model.id,
                org_id=org_id,
                number=number,
                task_id=task_id,
                adapter_key=adapter_key,
                splits_key=splits_key,
            )
        )
        session.commit()


@pytest.mark.real_model
async def test_the_gate_refuses_a_candidate_with_corrupted_facts_and_promotes_one_with_the_right_ones(
    temporal_env, settings, tmp_path
):
    settings = with_temporal(settings, temporal_env, max_new_tokens=24, promotion_margin=0.05)
    ctx = ActivityContext.from_settings(settings)
    questions = numeric_questions()
    assert len(questions) == QUESTIONS
    splits_key = "optimized/gate-facts/splits.json"
    ctx.write_json(splits_key, Splits(train=[], feedback=[], test=questions).to_json())
    bad = trained_adapter(settings, [corrupted(e) for e in questions], tmp_path / "corrupted")
    good = trained_adapter(settings, questions, tmp_path / "right")

    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        org_id = (await api.get("/api/v1/auth/me")).json()["org_id"]
        model = new_model(ctx, org_id, "facts-bot", SMOLLM2_ALIAS)
        register(ctx, org_id, model, 1, bad, splits_key)
        register(ctx, org_id, model, 2, good, splits_key)
        refused = await wait_for_gate(
            api, (await api.post("/api/v1/models/facts-bot/versions/1/promote", json={})).headers["location"], 600
        )
        promoted = await wait_for_gate(
            api, (await api.post("/api/v1/models/facts-bot/versions/2/promote", json={})).headers["location"], 600
        )
        aliases = (await api.get("/api/v1/models/facts-bot")).json()["aliases"]

    figures = refused["figures"]
    pooled = figures["pooled"]
    # worded like the references, so its blended score is far above the base model's, yet it is right no more often
    assert pooled["scores"]["candidate"] > pooled["scores"]["base"] + 0.2, pooled
    assert (
        pooled["judged"] == QUESTIONS
        and pooled["fact_accuracy"]["candidate"]["right"] <= pooled["fact_accuracy"]["base"]["right"]
    ), pooled
    assert refused["status"] == "REFUSED" and "answers no more questions right" in refused["reason"], refused["reason"]
    comparison = figures["comparisons"]["candidate - base"]
    assert comparison["gained"] <= comparison["lost"] and 0 <= comparison["p_value"] <= 1

    assert promoted["status"] == "PROMOTED", (promoted["reason"], promoted["figures"]["pooled"])
    better = promoted["figures"]["comparisons"]["candidate - base"]
    assert better["gained"] > better["lost"] and better["p_value"] < 0.05
    assert aliases == {"production": 2}
