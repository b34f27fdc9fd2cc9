"""The serving engine on a tiny model with real adapters: a batch of rows on different adapters answers exactly what
each adapter answers alone, rows leave as they finish, and sampling follows each row's own seed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from serving.engine import AdapterEngine, AdapterRef, GenerationRequest, SamplingParams
from testkit.model import random_adapters


@pytest.fixture(scope="module")
def adapters(lively_model_dir, tmp_path_factory):
    """Three LoRA adapters with random (non-zero) weights: each changes the base model's answers."""
    folder = tmp_path_factory.mktemp("adapters")
    return [AdapterRef(p.name, p) for p in random_adapters(lively_model_dir, folder, ["a0", "a1", "a2"], seed=100)]


def lively_engine(model_dir, **options) -> tuple[AdapterEngine, Any]:
    """An engine on the lively tiny model, and its tokenizer; it never stops at an end-of-sequence token (random
    weights: every row decodes its full length, so rows are compared token for token)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    engine = AdapterEngine(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer, **options)
    engine.eos = set()
    return engine, tokenizer


def alone(lively_model_dir, adapter: AdapterRef | None, prompt: list[int], max_tokens: int) -> list[int]:
    """What `generate` answers for one prompt on one adapter (greedy), the reference."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(lively_model_dir).eval()
    if adapter:
        model = PeftModel.from_pretrained(model, str(adapter.path)).eval()
    out = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
        max_new_tokens=max_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


async def collect(request: GenerationRequest) -> tuple[str, str, int]:
    text = ""
    while True:
        event = await request.events.get()
        if event.kind == "delta":
            text += event.text
        elif event.kind == "done":
            return text, event.finish_reason, event.completion_tokens
        else:
            raise AssertionError(event.text)


async def run(engine, prompts, adapters, params) -> list[tuple[str, str, int]]:
    loop = asyncio.get_running_loop()
    requests = [
        GenerationRequest(p, params[i] if isinstance(params, list) else params, a, loop)
        for i, (p, a) in enumerate(zip(prompts, adapters, strict=True))
    ]
    for request in requests:
        engine.submit(request)
    return await asyncio.gather(*(collect(r) for r in requests))


@pytest.mark.parametrize("batched_lora", [True, False], ids=["batched-lora", "peft-adapter-names"])
async def test_a_mixed_batch_answers_what_each_adapter_answers_alone(lively_model_dir, adapters, batched_lora):
    engine, tokenizer = lively_engine(lively_model_dir, max_adapters=2, batch_window=0.2, batched_lora=batched_lora)
    prompts = [tokenizer(f"question number {i} is about topic {i * 7}")["input_ids"] for i in range(4)]
    chosen = [adapters[0], None, adapters[1], adapters[0]]
    lengths = [6, 3, 6, 4]  # rows leave the batch at different steps
    results = await run(engine, prompts, chosen, [SamplingParams(max_tokens=n) for n in lengths])
    # one batch, three different adapters (base included)
    assert engine.stats["batches"] == 1 and engine.stats["rows"] == 4
    # the adapters matter
    assert alone(lively_model_dir, adapters[0], prompts[0], 6) != alone(lively_model_dir, None, prompts[0], 6)
    for (text, finish, count), prompt, adapter, n in zip(results, prompts, chosen, lengths, strict=True):
        expected = alone(lively_model_dir, adapter, prompt, n)
        assert (finish, count) == ("length", n)
        assert text == tokenizer.decode(expected, skip_special_tokens=True), adapter
    # a third adapter evicts the least recently used one that no request needs
    await run(engine, [prompts[0]], [adapters[2]], SamplingParams(max_tokens=2))
    assert list(engine.loaded) == ["a1", "a2"] and engine.stats["evictions"] == 1
    engine.close()


@pytest.mark.parametrize("batched_lora", [True, False], ids=["batched-lora", "peft-adapter-names"])
async def test_adapters_on_different_layers_share_a_batch(lively_model_dir, adapters, tmp_path, batched_lora):
    """A version trained with LoRA on every linear layer (`lora_targets="all_linear"`) is served beside one that adapts
    only attention: loaded after it, in one batch with it, each row answers what its adapter answers alone."""
    (path,) = random_adapters(
        lively_model_dir,
        tmp_path,
        ["mlp"],
        seed=300,
        target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    )
    every_layer = AdapterRef("mlp", path)
    engine, tokenizer = lively_engine(lively_model_dir, max_adapters=2, batch_window=0.2, batched_lora=batched_lora)
    prompts = [tokenizer(f"a question on layer {i}")["input_ids"] for i in range(3)]
    await run(engine, [prompts[0]], [adapters[0]], SamplingParams(max_tokens=2))  # attention only, loaded first
    chosen = [every_layer, adapters[0], None]
    results = await run(engine, prompts, chosen, SamplingParams(max_tokens=5))
    assert engine.stats["batches"] == 2
    for (text, _, _), prompt, adapter in zip(results, prompts, chosen, strict=True):
        assert text == tokenizer.decode(alone(lively_model_dir, adapter, prompt, 5), skip_special_tokens=True), adapter
    engine.close()


async def test_sampling_follows_each_rows_seed_and_stop_strings_end_a_row(lively_model_dir, adapters):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lively_model_dir)
    engine = AdapterEngine(AutoModelForCausalLM.from_pretrained(lively_model_dir), tokenizer, batch_window=0.2)
    engine.eos = set()
    prompt = tokenizer("tell me something")["input_ids"]
    sampled = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    first = await run(
        engine,
        [prompt, prompt],
        [adapters[0], adapters[0]],
        [sampled, SamplingParams(max_tokens=8, temperature=1.0, seed=8)],
    )
    again = await run(engine, [prompt], [adapters[0]], sampled)
    assert again[0] == first[0]  # the same seed gives the same answer, whatever else shared its batch
    greedy = (await run(engine, [prompt], [None], SamplingParams(max_tokens=8)))[0][0]
    stop = greedy[2:5]
    stopped = (await run(engine, [prompt], [None], SamplingParams(max_tokens=8, stop=(stop,))))[0]
    assert stopped[1] == "stop" and stopped[0] == greedy[: greedy.index(stop)]
    engine.close()


async def first_delta(request: GenerationRequest) -> str:
    """Wait for a request's first streamed text (its row is decoding), and put it back for `collect`."""
    event = await asyncio.wait_for(request.events.get(), 60)
    assert event.kind == "delta", event
    rest = [event]
    while not request.events.empty():
        rest.append(request.events.get_nowait())
    for e in rest:
        request.events.put_nowait(e)
    return event.text


@pytest.mark.parametrize("batched_lora", [True, False], ids=["batched-lora", "peft-adapter-names"])
async def test_requests_join_a_running_batch_and_answer_what_generate_answers(lively_model_dir, adapters, batched_lora):
    """Rows that arrive mid-decode are prefilled and join the running batch at its next step (one batch of decode
    steps, not three), whatever their adapters and prompt lengths, and each answers token for token what `generate`
    answers alone; the longest row leaves first and its padding columns go with it."""
    engine, tokenizer = lively_engine(lively_model_dir, max_adapters=3, batch_window=0.0, batched_lora=batched_lora)
    loop = asyncio.get_running_loop()
    long_prompt = tokenizer("a rather long question that goes on and on about the topic of ports " * 3)["input_ids"]
    short_prompt = tokenizer("short one")["input_ids"]
    mid_prompt = tokenizer("a question of middling length about ports")["input_ids"]
    try:
        first = GenerationRequest(mid_prompt, SamplingParams(max_tokens=40), adapters[0], loop)
        engine.submit(first)
        await first_delta(first)  # the first row is decoding
        joining = [
            GenerationRequest(long_prompt, SamplingParams(max_tokens=3), adapters[1], loop),  # longer than the batch
            GenerationRequest(short_prompt, SamplingParams(max_tokens=12), None, loop),
        ]
        for request in joining:
            engine.submit(request)
        await first_delta(joining[0])
        late = GenerationRequest(short_prompt, SamplingParams(max_tokens=8), adapters[2], loop)
        engine.submit(late)
        results = await asyncio.gather(*(collect(r) for r in [first, *joining, late]))
    finally:
        engine.close()
    assert engine.stats["joined"] >= 2, engine.stats  # they joined the running batch rather than waiting for its end
    assert engine.stats["steps"] < 40 + 3 + 12 + 8 - 3  # far fewer decode steps than batches one after another
    for (text, finish, count), request in zip(results, [first, *joining, late], strict=True):
        n = request.params.max_tokens
        expected = alone(lively_model_dir, request.adapter, request.prompt_ids, n)
        assert (finish, count) == ("length", n)
        assert text == tokenizer.decode(expected, skip_special_tokens=True), request.adapter


async def test_static_batching_makes_a_late_request_wait_for_the_running_batch(lively_model_dir):
    """`join_running=False` (the benchmark's baseline): a request arriving mid-decode waits for the batch to end."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lively_model_dir)
    engine = AdapterEngine(
        AutoModelForCausalLM.from_pretrained(lively_model_dir), tokenizer, batch_window=0.0, join_running=False
    )
    engine.eos = set()
    loop = asyncio.get_running_loop()
    try:
        first = GenerationRequest([5, 6, 7], SamplingParams(max_tokens=30), None, loop)
        engine.submit(first)
        await first_delta(first)
        late = GenerationRequest([5, 6, 7], SamplingParams(max_tokens=4), None, loop)
        engine.submit(late)
        results = await asyncio.gather(collect(first), collect(late))
    finally:
        engine.close()
    assert engine.stats["batches"] == 2 and engine.stats["joined"] == 0
    assert results[1][0] == results[0][0][: len(results[1][0])]  # same prompt, greedy: the same start


async def test_a_cancelled_row_leaves_the_batch_within_two_decode_steps(lively_model_dir):
    """A client that leaves mid-answer frees its row (and its cache rows) at most two decode steps later; the rest of
    the batch decodes on."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    engine = AdapterEngine(
        AutoModelForCausalLM.from_pretrained(lively_model_dir), AutoTokenizer.from_pretrained(lively_model_dir)
    )
    engine.eos = set()
    loop = asyncio.get_running_loop()
    try:
        kept = GenerationRequest([1, 2, 3, 4], SamplingParams(max_tokens=60), None, loop)
        left = GenerationRequest([9, 8, 7], SamplingParams(max_tokens=60), None, loop)
        engine.submit(kept)
        engine.submit(left)
        for _ in range(3):
            await first_delta(left)
            while not left.events.empty():
                left.events.get_nowait()
        steps_at_cancel = engine.stats["steps"]
        left.cancel()
        while (event := await asyncio.wait_for(left.events.get(), 60)).kind == "delta":
            pass
        kept_result = await collect(kept)
    finally:
        engine.close()
    assert event.finish_reason == "cancelled"
    # the row had one token from its prefill and one per step: it left at step `completion_tokens`
    assert 0 < event.completion_tokens - steps_at_cancel <= 2, (event.completion_tokens, steps_at_cancel)
    assert kept_result[1:] == ("length", 60)


@pytest.mark.real_model  # Gemma's tokenizer comes from de-quantizing Gemma 3 270M (about a minute, once a session)
async def test_a_gemma_model_with_a_sliding_window_joins_rows_mid_decode_and_answers_what_generate_answers(
    lively_gemma_dir, tmp_path
):
    """The catalog's second base model has the layers of Gemma 3: here a sliding window of 8 tokens, shorter than
    every prompt, beside a layer that attends to everything. Rows join mid-decode on different adapters and each
    answers token for token what `generate` answers alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gemma_adapters = [
        AdapterRef(p.name, p) for p in random_adapters(lively_gemma_dir, tmp_path, ["g0", "g1"], seed=200)
    ]
    tokenizer = AutoTokenizer.from_pretrained(lively_gemma_dir)
    engine = AdapterEngine(
        AutoModelForCausalLM.from_pretrained(lively_gemma_dir), tokenizer, max_adapters=2, batch_window=0.0
    )
    engine.eos = set()
    loop = asyncio.get_running_loop()
    prompts = [
        tokenizer("a question of middling length about ports and their numbers")["input_ids"],
        tokenizer("a rather long question that goes on and on about the topic of ports " * 3)["input_ids"],
        tokenizer("a shorter question: which port does the web console of the product listen on")["input_ids"],
    ]
    assert min(len(p) for p in prompts) > 8
    try:
        first = GenerationRequest(prompts[0], SamplingParams(max_tokens=30), gemma_adapters[0], loop)
        engine.submit(first)
        await first_delta(first)
        joining = [
            GenerationRequest(prompts[1], SamplingParams(max_tokens=6), gemma_adapters[1], loop),
            GenerationRequest(prompts[2], SamplingParams(max_tokens=12), None, loop),
        ]
        for request in joining:
            engine.submit(request)
        results = await asyncio.gather(*(collect(r) for r in [first, *joining]))
    finally:
        engine.close()
    assert engine.stats["joined"] >= 1, engine.stats
    for (text, finish, count), request in zip(results, [first, *joining], strict=True):
        n = request.params.max_tokens
        expected = alone(lively_gemma_dir, request.adapter, request.prompt_ids, n)
        assert (finish, count) == ("length", n)
        assert text == tokenizer.decode(expected, skip_special_tokens=True), request.adapter


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
async def test_the_engine_computes_in_its_precision_and_answers_what_generate_answers_in_it(
    lively_model_dir, adapters, precision
):
    """An engine in bf16 runs every forward pass under bf16 autocast (the evaluation's precision, so a model is served
    as it was evaluated), and one request answers what `generate` answers alone in that precision."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ml.precision import autocast

    tokenizer = AutoTokenizer.from_pretrained(lively_model_dir)
    model = AutoModelForCausalLM.from_pretrained(lively_model_dir)
    seen: list[bool] = []
    model.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    engine = AdapterEngine(model, tokenizer, max_adapters=2, batch_window=0.0, precision=precision)
    engine.eos = set()
    prompt = tokenizer("which port does the console use")["input_ids"]
    try:
        (text, finish, count), *_ = await run(engine, [prompt], [adapters[0]], SamplingParams(max_tokens=8))
    finally:
        engine.close()
    assert seen and set(seen) == {precision == "bf16"}
    with autocast("cpu", precision):
        expected = alone(lively_model_dir, adapters[0], prompt, 8)
    assert (text, finish, count) == (tokenizer.decode(expected, skip_special_tokens=True), "length", 8)
