"""A candidate trained on answers whose facts were corrupted (its wording is the references' own, a number changed),
on the real SmolLM2 weights with real activities on a real Temporal server: the promotion gate refuses it with the
figures, and promotes a candidate trained on the right answers over the base model; released in weighted steps under
real traffic to the real serving app, it is rolled back at its first step, its answers to the questions the versions
know the facts of judged wrong, with no client request failing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from activities.context import ActivityContext
from cli.users import create_user
from core.access import Role, Scope
from db.models import RegisteredModel, new_id
from ml.base_model import SMOLLM2_ALIAS, load_model_and_tokenizer
from ml.examples import Example, normalize_text, record_checks, record_to_pair
from ml.optimizer import Splits
from ml.release import Thresholds
from ml.trainer import train_lora
from schemas.workflow_io import Hyperparameters
from services import registry, releases
from services.identity import token_pair
from services.registry import Actor
from serving.app import create_serving_app
from storage.object_store import put_dir
from testkit.api import TEST_PASSWORD, api_client, wait_for_gate, with_temporal
from testkit.factories import version_row
from testkit.phases import running_workers
from testkit.registry import add_version, new_model, point
from testkit.releases import start_release, traffic
from testkit.servers import serving
from testkit.suites import wait_for_run

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


@pytest.fixture(scope="module")
def fact_adapters(model_cache, tmp_path_factory) -> tuple[Path, Path]:
    """(corrupted, right): adapters trained on the numeric questions' answers with their numbers changed, and as
    they are; trained once for the module's tests."""
    folder, questions = tmp_path_factory.mktemp("fact-adapters"), numeric_questions()
    return (
        trained_adapter(model_cache, [corrupted(e) for e in questions], folder / "corrupted"),
        trained_adapter(model_cache, questions, folder / "right"),
    )


def trained_adapter(model_cache: Path, examples: list[Example], folder: Path) -> Path:
    model, tokenizer = load_model_and_tokenizer(SMOLLM2_ALIAS, model_cache, device="cpu")
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
    temporal_env, settings, fact_adapters
):
    settings = with_temporal(settings, temporal_env, max_new_tokens=24, promotion_margin=0.05)
    ctx = ActivityContext.from_settings(settings)
    questions = numeric_questions()
    assert len(questions) == QUESTIONS
    splits_key = "optimized/gate-facts/splits.json"
    ctx.write_json(splits_key, Splits(train=[], feedback=[], test=questions).to_json())
    bad, good = fact_adapters

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


@pytest.mark.real_model
async def test_a_release_of_the_corrupted_candidate_is_rolled_back_at_its_first_step_by_its_wrong_facts(
    temporal_env, settings, fact_adapters
):
    settings = with_temporal(settings, temporal_env, serve_batch_window_ms=5)
    ctx = ActivityContext.from_settings(settings)
    questions = numeric_questions()
    splits_key = "optimized/canary-facts/splits.json"  # the versions' locked splits: the questions they know
    ctx.write_json(splits_key, Splits(train=[], feedback=[], test=questions).to_json())
    bad, good = fact_adapters
    owner = create_user(settings, "olga", TEST_PASSWORD, "canary-org", Role.OWNER)
    model = new_model(ctx, owner.org.id, "facts-bot", SMOLLM2_ALIAS)
    add_version(ctx, model, 1, good, splits_key=splits_key)  # with its checksum: serving verifies it
    add_version(ctx, model, 2, bad, splits_key=splits_key)
    point(ctx, model, "production", 1)
    token = token_pair(settings, owner.user, owner.org.id, Role.OWNER).access_token
    # no error, no answer rated down, latency left out (a shared 2-core machine's p95 is noise): only facts can fail it
    thresholds = Thresholds(
        bake_seconds=1,
        min_requests=3,
        max_wait_seconds=900,
        poll_seconds=0.5,
        latency_slack_ms=600_000,
        min_fact_checked=3,
    )

    with serving(create_serving_app(settings)) as base_url:
        async with running_workers(temporal_env.client, ctx, pools=("control",)):
            asked = tuple(e.question for e in questions)
            with traffic(base_url, token, model="facts-bot", questions=asked, max_tokens=24, timeout=120) as generator:
                release_id, handle = await start_release(
                    temporal_env.client,
                    ctx,
                    model,
                    steps=[10, 50, 100],
                    thresholds=thresholds,
                    actor=Actor("olga", None, frozenset({Scope.MODELS_WRITE})),
                )
                result = await handle.result()

    assert result.status == "ROLLED_BACK", result.reason
    assert "fact-checked answers right" in result.reason, result.reason
    with ctx.sessions() as session:
        made = releases.decisions_of(session, release_id)
        aliases = registry.aliases_of(session, session.get_one(RegisteredModel, model.id))
    assert [(d.kind, d.candidate_weight) for d in made] == [("start", 0), ("traffic", 10), ("rollback", 0)]
    facts = made[-1].figures["facts"]
    assert facts["candidate"]["judged"] >= 3 and facts["candidate"]["fact_accuracy"] <= 0.2, facts
    assert facts["current"]["fact_accuracy"] >= 0.5, facts
    assert aliases["production"].version == 1
    assert generator.answered and all(code == 200 for _, code, _ in generator.answered), generator.answered[:5]
    assert {version for _, _, version in generator.answered} == {"facts-bot@1", "facts-bot@2"}


@pytest.mark.real_model
async def test_a_suite_of_the_numeric_questions_passes_the_right_adapter_and_fails_the_corrupted_one(
    temporal_env, settings, fact_adapters
):
    """Suite verdicts with the real model: the right adapter's answers pass their fact checks far more often than the
    corrupted one's, and the comparison of the two runs lists the cases the corruption broke."""
    settings = with_temporal(settings, temporal_env, max_new_tokens=24)
    ctx = ActivityContext.from_settings(settings)
    questions = numeric_questions()
    bad, good = fact_adapters
    cases = [{"id": f"q{i}", "prompt": e.question, "checks": e.checks} for i, e in enumerate(questions)]
    async with running_workers(temporal_env.client, ctx), api_client(settings) as api:
        org_id = (await api.get("/api/v1/auth/me")).json()["org_id"]
        model = new_model(ctx, org_id, "facts-bot", SMOLLM2_ALIAS)
        add_version(ctx, model, 1, good)
        add_version(ctx, model, 2, bad)
        created = await api.post("/api/v1/suites", json={"name": "numbers", "cases": cases, "blocking": True})
        assert created.status_code == 201, created.text
        runs = {}
        for version in (1, 2):
            started = await api.post("/api/v1/suites/numbers/runs", json={"model": f"facts-bot@{version}"})
            runs[version] = await wait_for_run(api, started.headers["location"], timeout=600)
        compared = (
            await api.get(
                "/api/v1/suites/numbers/compare", params={"before": runs[1]["run_id"], "after": runs[2]["run_id"]}
            )
        ).json()

    right, corrupted_run = runs[1], runs[2]
    assert right["status"] == corrupted_run["status"] == "COMPLETED", (right["error"], corrupted_run["error"])
    assert right["passed"] >= 6 and corrupted_run["passed"] <= 2, (right["passed"], corrupted_run["passed"])
    failed = next(r for r in corrupted_run["results"] if not r["passed"])
    assert failed["results"][0]["assertion"] == "check number" and failed["results"][0]["detail"].startswith("expected")
    assert compared["counts"]["broken"] >= 4 and compared["counts"]["fixed"] <= 1, compared["counts"]
    assert compared["p_value"] < 0.05, compared
