"""Every completion is recorded, however it ends, over real HTTP on the tiny model: a streamed answer whose client
leaves is `cancelled`, a generation the engine fails (a broken adapter) and a request refused once its model is known
are `failed` with their error, and the API's history shows each status and filters by it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from activities.context import ActivityContext
from api.main import create_app
from cli.users import create_user
from core.access import Role
from db.models import QAEntry, RegisteredModel, new_id
from services.identity import token_pair
from services.qa import feedback_examples
from serving.app import create_serving_app
from serving.engine import AdapterEngine, GenerationRequest, SamplingParams
from testkit.api import TEST_PASSWORD, client_for
from testkit.polling import poll_until_blocking
from testkit.registry import add_version, point
from testkit.servers import serving

ASK = [{"role": "user", "content": "Which port does the console use?"}]


@pytest.fixture
def world(settings, tiny_model_dir, adapter_dirs, tmp_path):
    """`bot` (v1: a real adapter, production) and `broken` (v1: an adapter the engine cannot load), served for real;
    the engine waits a second before each batch, so a client can leave before the first token."""
    settings = settings.model_copy(update={"serve_max_tokens": 64, "serve_batch_window_ms": 1000})
    ctx = ActivityContext.from_settings(settings)
    owner = create_user(settings, "olga", TEST_PASSWORD, "history-org", Role.OWNER)
    broken_adapter = tmp_path / "broken-adapter"
    broken_adapter.mkdir()
    (broken_adapter / "adapter_config.json").write_text("{not json")
    (broken_adapter / "adapter_model.safetensors").write_bytes(b"not weights")
    models = {}
    for name, adapter in (("bot", adapter_dirs / "v1"), ("broken", broken_adapter)):
        with ctx.sessions() as session:
            model = RegisteredModel(id=new_id(), org_id=owner.org.id, name=name, base_model=tiny_model_dir)
            session.add(model)
            session.commit()
        add_version(ctx, model, 1, Path(adapter))
        point(ctx, model, "production", 1)
        models[name] = model
    token = token_pair(settings, owner.user, owner.org.id, Role.OWNER).access_token
    with serving(create_serving_app(settings)) as base_url:
        yield settings, ctx, base_url, token


def entries(ctx: ActivityContext) -> list[QAEntry]:
    with ctx.sessions() as session:
        return list(session.scalars(select(QAEntry).order_by(QAEntry.created_at)))


def recorded(ctx: ActivityContext, count: int, timeout: float = 30) -> list[QAEntry]:
    """The history once it holds `count` entries (a completion is recorded as it ends, which may follow its
    response)."""
    return poll_until_blocking(
        lambda: entries(ctx), lambda found: len(found) >= count, timeout=timeout, what=f"{count} history entries"
    )


def test_a_stream_whose_client_leaves_is_recorded_as_cancelled(world):
    settings, ctx, base_url, token = world
    body = {"model": "bot", "messages": ASK, "max_tokens": 64, "stream": True, "conversation_id": "left"}
    with (
        httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        http.stream("POST", "/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert first.startswith("data: ") and '"role": "assistant"' in first
    # the client has gone before the engine's first batch
    [entry] = recorded(ctx, 1)
    assert entry.status == "cancelled" and entry.conversation_id == "left" and entry.model == "bot@1"
    assert entry.finish_reason is None and entry.error is None and entry.prompt_tokens > 0

    # the server goes on answering: a full stream afterwards is recorded as completed
    api = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in api.chat.completions.create(model="bot", messages=ASK, max_tokens=8, temperature=0, stream=True)
        if c.choices
    )
    cancelled, completed = recorded(ctx, 2)
    assert cancelled.id == entry.id
    assert (
        completed.status == "completed"
        and completed.answer == streamed
        and completed.finish_reason
        in (
            "stop",
            "length",
        )
    )


def test_an_openai_client_that_closes_its_stream_mid_answer_frees_its_row(world):
    """The official client reads a few chunks of a long answer and closes the stream: the engine stops generating for
    it (its row leaves the batch) and the history records it as cancelled with the tokens it produced."""
    settings, ctx, base_url, token = world
    api = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)
    stream = api.chat.completions.create(
        model="bot", messages=ASK, max_tokens=64, temperature=0, stream=True, extra_body={"conversation_id": "closed"}
    )
    chunks = 0
    for chunk in stream:
        chunks += bool(chunk.choices and chunk.choices[0].delta.content)
        if chunks == 2:
            break
    stream.close()
    [entry] = recorded(ctx, 1)
    assert (entry.status, entry.conversation_id) == ("cancelled", "closed")
    assert 2 <= entry.completion_tokens < 64  # it had streamed some tokens and stopped long before its limit


def test_a_plain_request_whose_client_leaves_is_recorded_as_cancelled(world):
    settings, ctx, base_url, token = world
    body = {"model": "bot", "messages": ASK, "max_tokens": 64, "conversation_id": "gone"}
    headers = {"Authorization": f"Bearer {token}"}
    # the engine waits a second before its first batch: the client gives up long before an answer can come
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/chat/completions", json=body, headers=headers, timeout=httpx.Timeout(30, read=0.3))
    [entry] = recorded(ctx, 1)
    assert (entry.status, entry.conversation_id, entry.finish_reason) == ("cancelled", "gone", None)
    assert entry.completion_tokens < 64  # the engine stopped generating for it


async def test_failed_completions_are_recorded_with_their_error_and_shown_by_the_api(world):
    settings, ctx, base_url, token = world
    api = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)
    # the engine fails: the version's adapter cannot be loaded (503, plain; an error event, streamed)
    with pytest.raises(openai.InternalServerError) as caught:
        api.chat.completions.create(model="broken", messages=ASK, max_tokens=4)
    assert caught.value.status_code == 503 and "generation failed" in caught.value.message
    with pytest.raises(openai.APIError) as streamed:
        list(api.chat.completions.create(model="broken", messages=ASK, max_tokens=4, stream=True))
    assert "generation failed" in streamed.value.message
    # refused once the model was known: the prompt does not fit
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model="bot", messages=[{"role": "user", "content": "word " * 600}], max_tokens=10)
    # refused before: no such model, nothing to record
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="nope", messages=ASK)

    failed = recorded(ctx, 3)
    assert [(e.model, e.status) for e in failed] == [("broken@1", "failed")] * 2 + [("bot@1", "failed")]
    assert all("generation failed" in (e.error or "") for e in failed[:2])
    assert "maximum context length" in (failed[2].error or "") and failed[2].prompt_tokens > 0
    assert all(e.finish_reason is None and e.answer == "" for e in failed)

    api.chat.completions.create(model="bot", messages=ASK, max_tokens=4)
    async with client_for(create_app(settings), settings, "olga", "history-org", Role.OWNER) as history:
        shown = (await history.get("/api/v1/qa/history", params={"status": "failed"})).json()
        assert shown["total"] == 3 and {e["status"] for e in shown["items"]} == {"failed"}
        assert all(e["error"] and e["finish_reason"] is None for e in shown["items"])
        completed = (await history.get("/api/v1/qa/history", params={"status": "completed"})).json()["items"]
        assert [e["model"] for e in completed] == ["bot@1"] and completed[0]["finish_reason"] in ("stop", "length")


async def test_the_engine_stops_generating_for_a_cancelled_request(tiny_model_dir):
    """A request whose client left leaves its batch at its next token; the rest of the batch runs on."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    engine = AdapterEngine(model, AutoTokenizer.from_pretrained(tiny_model_dir), batch_window=0.5)
    try:
        loop = asyncio.get_running_loop()
        params = SamplingParams(max_tokens=24)
        kept, left = (GenerationRequest([1, 2, 3, 4], params, None, loop) for _ in range(2))
        engine.submit(kept)
        engine.submit(left)
        left.cancel()  # before the batch starts: it leaves at its first token
        events = {}
        for name, request in (("kept", kept), ("left", left)):
            while (event := await asyncio.wait_for(request.events.get(), 60)).kind == "delta":
                pass
            events[name] = event
    finally:
        engine.close()
    assert events["left"].kind == "done" and events["left"].finish_reason == "cancelled"
    assert events["left"].completion_tokens == 0
    assert events["kept"].finish_reason in ("stop", "length") and engine.stats["batches"] == 1


def test_only_a_completed_answer_rated_up_becomes_training_data():
    def rated(status: str, answer: str, corrected: str | None = None) -> QAEntry:
        return QAEntry(
            id=new_id(),
            model="bot@1",
            messages=[{"role": "user", "content": "Which port does the web console use?"}],
            answer=answer,
            status=status,
            rating="up",
            corrected_answer=corrected,
        )

    rows = feedback_examples(
        [
            rated("completed", "Port 7410."),
            rated("cancelled", "Port 74"),  # cut short: not an answer
            rated("failed", ""),
            rated("cancelled", "Port 74", corrected="Port 7410."),  # a user's correction stands on its own
        ]
    )
    assert [(r["answer"], r["source"]) for r in rows] == [("Port 7410.", "rated_up"), ("Port 7410.", "corrected")]
