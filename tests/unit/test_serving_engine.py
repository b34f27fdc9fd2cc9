"""The serving engine on a tiny model with real adapters: a batch of rows on different adapters answers exactly what
each adapter answers alone, rows leave as they finish, and sampling follows each row's own seed."""

from __future__ import annotations

import asyncio

import pytest
import torch

from serving.engine import AdapterEngine, AdapterRef, GenerationRequest, SamplingParams
from testkit.model import random_adapters


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """Three LoRA adapters with random (non-zero) weights: each changes the base model's answers."""
    folder = tmp_path_factory.mktemp("adapters")
    return [AdapterRef(p.name, p) for p in random_adapters(tiny_model_dir, folder, ["a0", "a1", "a2"], seed=100)]


def alone(tiny_model_dir, adapter: AdapterRef | None, prompt: list[int], max_tokens: int) -> list[int]:
    """What `generate` answers for one prompt on one adapter (greedy), the reference."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
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
async def test_a_mixed_batch_answers_what_each_adapter_answers_alone(tiny_model_dir, adapters, batched_lora):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = AdapterEngine(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        tokenizer,
        max_adapters=2,
        batch_window=0.2,
        batched_lora=batched_lora,
    )
    engine.eos = set()  # random weights: decode the full length, so every row is compared token for token
    prompts = [tokenizer(f"question number {i} is about topic {i * 7}")["input_ids"] for i in range(4)]
    chosen = [adapters[0], None, adapters[1], adapters[0]]
    lengths = [6, 3, 6, 4]  # rows leave the batch at different steps
    results = await run(engine, prompts, chosen, [SamplingParams(max_tokens=n) for n in lengths])
    # one batch, three different adapters (base included)
    assert engine.stats["batches"] == 1 and engine.stats["rows"] == 4
    # the adapters matter
    assert alone(tiny_model_dir, adapters[0], prompts[0], 6) != alone(tiny_model_dir, None, prompts[0], 6)
    for (text, finish, count), prompt, adapter, n in zip(results, prompts, chosen, lengths, strict=True):
        expected = alone(tiny_model_dir, adapter, prompt, n)
        assert (finish, count) == ("length", n)
        assert text == tokenizer.decode(expected, skip_special_tokens=True), adapter
    # a third adapter evicts the least recently used one that no request needs
    await run(engine, [prompts[0]], [adapters[2]], SamplingParams(max_tokens=2))
    assert list(engine.loaded) == ["a1", "a2"] and engine.stats["evictions"] == 1
    engine.close()


async def test_sampling_follows_each_rows_seed_and_stop_strings_end_a_row(tiny_model_dir, adapters):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = AdapterEngine(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, batch_window=0.2)
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
