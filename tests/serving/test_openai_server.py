"""`wlops serve` through the official `openai` client over real HTTP, on a tiny model with real adapters: the model
list, plain and streamed completions that name the exact version, the history they leave, every bad input in OpenAI's
error shape, and an alias move picked up without a restart while a stream in flight finishes on its own version."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from sqlalchemy import select

from activities.context import ActivityContext
from cli.users import create_user
from core.access import Role
from db.models import AliasMove, ModelVersion, QAEntry, RegisteredModel, new_id
from services.identity import token_pair
from serving.app import create_serving_app
from storage.object_store import put_bytes
from testkit.api import TEST_PASSWORD, api_client
from testkit.registry import add_version, point
from testkit.servers import serving


@pytest.fixture
def world(settings, tiny_model_dir, adapter_dirs):
    settings = settings.model_copy(update={"serve_max_tokens": 64, "serve_batch_window_ms": 50})
    ctx = ActivityContext.from_settings(settings)
    owner = create_user(settings, "olga", TEST_PASSWORD, "serve-org", Role.OWNER)
    viewer = create_user(settings, "vera", TEST_PASSWORD, "serve-org", Role.VIEWER)
    stranger = create_user(settings, "sam", TEST_PASSWORD, "other-org", Role.OWNER)
    with ctx.sessions() as session:
        model = RegisteredModel(id=new_id(), org_id=owner.org.id, name="bot", base_model=tiny_model_dir)
        session.add(model)
        session.commit()
    for number in (1, 2):
        add_version(ctx, model, number, adapter_dirs / f"v{number}")
    point(ctx, model, "production", 1)
    point(ctx, model, "staging", 2)
    tokens = {
        who: token_pair(settings, setup.user, setup.org.id, role).access_token
        for who, setup, role in (
            ("owner", owner, Role.OWNER),
            ("viewer", viewer, Role.VIEWER),
            ("stranger", stranger, Role.OWNER),
        )
    }
    app = create_serving_app(settings)
    with serving(app) as base_url:
        yield settings, ctx, model, base_url, tokens, app


def versions(ctx, model) -> list[ModelVersion]:
    with ctx.sessions() as session:
        return list(session.scalars(select(ModelVersion).where(ModelVersion.model_id == model.id)))


def client(base_url: str, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)


ASK = [{"role": "user", "content": "Which port does the console use?"}]


def test_models_plain_and_streamed_completions_and_their_history(world, tiny_model_dir):
    settings, ctx, model, base_url, tokens, app = world
    api = client(base_url, tokens["owner"])
    assert {m.id for m in api.models.list().data} >= {
        "bot",
        "bot@production",
        "bot@staging",
        "smollm2-135m-instruct",
        tiny_model_dir,
    }

    answer = api.chat.completions.create(
        model="bot", messages=ASK, max_tokens=12, temperature=0, extra_body={"conversation_id": "conv-1"}
    )
    assert answer.model == "bot@1" and answer.choices[0].finish_reason in ("stop", "length")
    assert (
        answer.usage.completion_tokens <= 12
        and answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    )
    staged = api.chat.completions.create(model="bot@staging", messages=ASK, max_tokens=12, temperature=0)
    by_number = api.chat.completions.create(model="bot@2", messages=ASK, max_tokens=12, temperature=0)
    base = api.chat.completions.create(model=tiny_model_dir, messages=ASK, max_tokens=12, temperature=0)
    assert (
        staged.model == by_number.model == "bot@2"
        and staged.choices[0].message.content == by_number.choices[0].message.content
    )
    assert base.model == tiny_model_dir
    # each its own
    assert (
        len({answer.choices[0].message.content, staged.choices[0].message.content, base.choices[0].message.content})
        == 3
    )

    chunks = list(
        api.chat.completions.create(
            model="bot", messages=ASK, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer.choices[0].message.content and {c.model for c in chunks} == {"bot@1"}
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    seeded = [
        api.chat.completions.create(model="bot", messages=ASK, max_tokens=10, temperature=1.0, top_p=0.9, seed=3)
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1]

    with ctx.sessions() as session:
        entries = session.scalars(select(QAEntry).order_by(QAEntry.created_at)).all()
    assert len(entries) == 7 and entries[0].conversation_id == "conv-1" and entries[0].model == "bot@1"
    assert (
        entries[0].answer == answer.choices[0].message.content
        and entries[0].messages == ASK
        and entries[0].latency_ms >= 0
    )
    assert entries[4].answer == streamed  # the streamed one is recorded too

    # its Prometheus metrics count them by registered model (not by version), with their tokens and latencies
    scraped = httpx.get(base_url.removesuffix("/v1") + "/metrics").text
    bot = [
        line
        for line in scraped.splitlines()
        if line.startswith("wlops_serving_completions_total{") and 'model="bot"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in bot) >= 6 and 'model="bot@1"' not in scraped
    assert 'wlops_serving_time_to_first_token_seconds_count{model="bot"}' in scraped
    assert (
        'wlops_http_requests_total{method="POST",route="/v1/chat/completions",service="serve",status="200"}' in scraped
    )


def test_bad_requests_get_openai_errors(world):
    settings, ctx, model, base_url, tokens, app = world
    api = client(base_url, tokens["owner"])
    cases = [
        (dict(model="nope", messages=ASK), openai.NotFoundError, "does not exist"),
        (dict(model="bot@canary", messages=ASK), openai.NotFoundError, "has no alias canary"),
        (dict(model="bot@9", messages=ASK), openai.NotFoundError, "has no version 9"),
        (dict(model="bot", messages=[]), openai.BadRequestError, "messages"),
        (dict(model="bot", messages=ASK, max_tokens=65), openai.BadRequestError, "max_tokens: at most 64"),
        (dict(model="bot", messages=ASK, temperature=3), openai.BadRequestError, "temperature"),
        (dict(model="bot", messages=ASK, n=2), openai.BadRequestError, "n"),
        (
            dict(model="bot", messages=[{"role": "user", "content": "word " * 600}], max_tokens=10),
            openai.BadRequestError,
            "maximum context length",
        ),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error) as caught:
            api.chat.completions.create(**kwargs)
        assert message in caught.value.message, (kwargs, caught.value.message)
        assert caught.value.body["type"] == "invalid_request_error" or error is openai.NotFoundError
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="bot", messages=[{"role": "user", "content": "word " * 600}], max_tokens=10)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "messages"
    with pytest.raises(openai.AuthenticationError):
        client(base_url, "garbage").chat.completions.create(model="bot", messages=ASK)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(base_url, tokens["viewer"]).chat.completions.create(model="bot", messages=ASK)
    assert "inference" in caught.value.message
    with pytest.raises(openai.NotFoundError):  # another organization's model does not exist for it
        client(base_url, tokens["stranger"]).chat.completions.create(model="bot", messages=ASK)
    assert "bot" not in {m.id for m in client(base_url, tokens["stranger"]).models.list().data}


async def test_an_adapter_that_fails_its_checksum_is_neither_served_nor_downloaded(world):
    settings, ctx, model, base_url, tokens, app = world
    [tampered] = [v for v in versions(ctx, model) if v.version == 2]
    put_bytes(ctx.store, tampered.adapter_key + "adapter_model.safetensors", b"not the adapter that was registered")
    api = client(base_url, tokens["owner"])
    with pytest.raises(openai.InternalServerError) as caught:
        api.chat.completions.create(model="bot@staging", messages=ASK, max_tokens=2)
    assert "failed its checksum" in caught.value.message and "not served" in caught.value.message
    assert api.chat.completions.create(model="bot", messages=ASK, max_tokens=2).model == "bot@1"  # v1 is intact
    with ctx.sessions() as session:
        failed = session.scalars(select(QAEntry).where(QAEntry.status == "failed")).one()
    assert failed.model_version_id == tampered.id and "failed its checksum" in (failed.error or "")
    async with api_client(settings, "olga", "serve-org") as rest:
        response = await rest.get("/api/v1/models/bot/versions/2/adapter")
        assert response.status_code == 500 and "failed its checksum" in response.json()["detail"]
        assert (await rest.get("/api/v1/models/bot/versions/1/adapter")).status_code == 200


def test_clients_asking_at_once_for_a_tampered_adapter_are_each_told_it_failed_its_checksum(world):
    """Many requests fetch and check the same adapter at once, and each throws the copy away: none may read a copy
    another is deleting (it once answered 'No such file or directory')."""
    from concurrent.futures import ThreadPoolExecutor

    settings, ctx, model, base_url, tokens, app = world
    [tampered] = [v for v in versions(ctx, model) if v.version == 2]
    put_bytes(ctx.store, tampered.adapter_key + "adapter_model.safetensors", b"x" * 4_000_000)  # slow to hash
    api = client(base_url, tokens["owner"])

    def ask(model_name: str) -> str:
        try:
            return api.chat.completions.create(model=model_name, messages=ASK, max_tokens=2).model
        except openai.InternalServerError as exc:
            return exc.message

    with ThreadPoolExecutor(12) as pool:
        said = list(pool.map(ask, ["bot@staging"] * 12))
    assert all("failed its checksum" in s and "not served" in s for s in said), said
    with ThreadPoolExecutor(12) as pool:  # and the intact version, fetched by all at once, serves each of them
        assert set(pool.map(ask, ["bot"] * 12)) == {"bot@1"}


def test_an_alias_move_takes_effect_without_a_restart_while_a_stream_finishes_on_its_version(world):
    settings, ctx, model, base_url, tokens, app = world
    api = client(base_url, tokens["owner"])
    api.chat.completions.create(model="bot", messages=ASK, max_tokens=2)  # the engine and v1 are loaded
    stream = api.chat.completions.create(model="bot", messages=ASK, max_tokens=64, temperature=0, stream=True)
    first = next(iter(stream))
    moved_at = time.perf_counter()
    point(ctx, model, "production", 2)
    after = api.chat.completions.create(model="bot", messages=ASK, max_tokens=4)
    picked_up = time.perf_counter() - moved_at
    rest = list(stream)
    assert after.model == "bot@2" and picked_up < 5
    assert (
        first.model == "bot@1"
        and {c.model for c in rest} == {"bot@1"}
        and rest[-1].choices[0].finish_reason in ("stop", "length")
    )
    with ctx.sessions() as session:
        assert [
            m.to_version
            for m in session.scalars(select(AliasMove).where(AliasMove.alias == "production").order_by(AliasMove.id))
        ] == [1, 2]


async def test_concurrent_requests_on_different_adapters_share_batches(world):
    settings, ctx, model, base_url, tokens, app = world
    api = openai.AsyncOpenAI(base_url=base_url, api_key=tokens["owner"], max_retries=0)
    models = ["bot@1", "bot@2", "bot@staging", "bot"] * 2
    answers = await asyncio.gather(
        *(api.chat.completions.create(model=m, messages=ASK, max_tokens=8, temperature=0) for m in models)
    )
    assert [a.model for a in answers] == ["bot@1", "bot@2", "bot@2", "bot@1"] * 2
    assert (
        answers[0].choices[0].message.content
        == answers[3].choices[0].message.content
        == answers[7].choices[0].message.content
    )
    engine = app.state.engines.get(model.base_model)
    # requests on different adapters were decoded together
    assert engine.stats["rows"] == 8 and engine.stats["batches"] < 8
    assert set(engine.loaded) == {v.id for v in versions(ctx, model)}


async def test_feedback_on_answers_becomes_a_dataset_with_lineage(world):
    """The production feedback loop: answers are rated (and corrected) through the API, and what users marked becomes
    training data that names the history entries it came from."""
    from api.main import create_app
    from testkit.api import client_for

    settings, ctx, model, base_url, tokens, app = world
    chat = openai.AsyncOpenAI(base_url=base_url, api_key=tokens["owner"], max_retries=0)
    questions = ["Which port does the console use?", "Where are the logs kept?", "How long are backups kept?"]
    for question in questions:
        await chat.chat.completions.create(
            model="bot",
            messages=[{"role": "user", "content": question}],
            max_tokens=6,
            extra_body={"conversation_id": "support-1"},
        )
    async with client_for(create_app(settings), settings, "olga", "serve-org", Role.OWNER) as api:
        history = (await api.get("/api/v1/qa/history", params={"conversation_id": "support-1"})).json()
        assert history["total"] == 3 and {e["model"] for e in history["items"]} == {"bot@1"}
        by_question = {e["messages"][-1]["content"]: e for e in history["items"]}
        good, wrong, useless = (by_question[q]["entry_id"] for q in questions)
        assert (await api.post(f"/api/v1/qa/history/{good}/feedback", json={"rating": "up"})).status_code == 200
        corrected = await api.post(
            f"/api/v1/qa/history/{wrong}/feedback",
            json={"rating": "down", "corrected_answer": "They are kept in /var/log."},
        )
        assert (
            corrected.json()["rating"] == "down"
            and corrected.json()["corrected_answer"] == "They are kept in /var/log."
        )
        assert (await api.post(f"/api/v1/qa/history/{useless}/feedback", json={"rating": "down"})).status_code == 200
        assert (await api.post(f"/api/v1/qa/history/{good}/feedback", json={"rating": "sideways"})).status_code == 422
        assert (await api.get("/api/v1/qa/history", params={"rating": "down", "model": "bot"})).json()["total"] == 2
        assert (await api.get("/api/v1/qa/history", params={"rating": "none"})).json()["total"] == 0

        created = await api.post(
            "/api/v1/qa/datasets", json={"name": "support feedback", "filter": {"conversation_id": "support-1"}}
        )
        assert created.status_code == 201, created.text
        dataset = created.json()
        assert dataset["sample_count"] == 2 and dataset["dataset_type"] == "qa_feedback"
        assert sorted(dataset["generation_log"]["qa_history_ids"]) == sorted([good, wrong])
        rows = (await api.get(f"/api/v1/datasets/{dataset['dataset_id']}/preview")).json()["rows"]
        assert {(r["question"], r["qa_history_id"], r["source"]) for r in rows} == {
            (questions[0], good, "rated_up"),
            (questions[1], wrong, "corrected"),
        }
        assert next(r for r in rows if r["qa_history_id"] == wrong)["answer"] == "They are kept in /var/log."
        empty = await api.post("/api/v1/qa/datasets", json={"name": "nothing", "filter": {"model": "bot@2"}})
        assert empty.status_code == 422 and "rate some answers first" in empty.json()["detail"]

        # a later correction lands as the next version of the same dataset, with why, and its diff shows it
        corrected = await api.post(
            f"/api/v1/qa/history/{useless}/feedback", json={"rating": "down", "corrected_answer": "Port 7410."}
        )
        assert corrected.status_code == 200
        again = await api.post(
            "/api/v1/qa/datasets",
            json={"dataset_id": dataset["dataset_id"], "filter": {"conversation_id": "support-1"}},
        )
        assert again.status_code == 201, again.text
        assert again.json()["version"] == 2 and again.json()["sample_count"] == 3
        assert useless in again.json()["generation_log"]["qa_history_ids"]
        versions = (await api.get(f"/api/v1/datasets/{dataset['dataset_id']}/versions")).json()["items"]
        assert versions[1]["reason"].startswith("QA history feedback: 3 rows")
        diff = (await api.get(f"/api/v1/datasets/{dataset['dataset_id']}/diff")).json()
        assert diff["counts"]["added"] == 1 and diff["added"][0]["record"]["answer"] == "Port 7410."
        nameless = await api.post("/api/v1/qa/datasets", json={"filter": {"conversation_id": "support-1"}})
        assert nameless.status_code == 422 and "needs a name" in nameless.json()["detail"]
    async with client_for(create_app(settings), settings, "sam", "other-org", Role.OWNER) as other:
        assert (await other.post(f"/api/v1/qa/history/{good}/feedback", json={"rating": "up"})).status_code == 404
        assert (await other.get("/api/v1/qa/history")).json()["total"] == 0
