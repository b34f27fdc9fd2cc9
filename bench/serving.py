"""Serving many adapters on one base: the engine behind `wlops serve` against a naive server, on the real SmolLM2
weights.

- 8 LoRA adapters (r=16 on q/k/v/o, random non-zero weights: the same shapes and cost as trained ones) are loaded.
- Clients: 1, 4 and 16 concurrent, each on a different adapter (mixed) and, at the same concurrency, all on one
  adapter (single). Each client sends `--requests` requests one after another, each generating exactly
  `--max-tokens` tokens (end-of-turn ignored, so every configuration generates the same amount).
- Measured: generated tokens/s in aggregate, and p50/p99 time to the first token; the mixed runs also with peft's own
  mixed-adapter path (rows grouped per adapter) instead of the engine's batched LoRA, for comparison.
- The naive baseline serves one request at a time and loads its adapter for each request (`PeftModel.from_pretrained`,
  `generate`, unload), as a server without an adapter cache or batching would.
- An alias switch: while 4 clients run, one of them asks for a 9th adapter nobody has used (as after an alias move
  to a new version): the engine loads it (and evicts one) between batches. Measured: that request's latency against
  the others' (target: it costs no request more than 1 s).

Targets: at 16 clients >= 4x the naive throughput; mixed adapters within 10% of a single adapter at the same
concurrency.

    python -m bench.serving [--requests 4] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write_result
from core.settings import Settings, configure_process_environment

QUESTIONS = [
    "Which port does the web console listen on?",
    "How long are hourly snapshots kept?",
    "Where is the audit log written?",
    "What does the relay do when a peer is down?",
    "How do I rotate the API keys?",
    "Which command restarts the scheduler?",
    "What is the default retention of backups?",
    "How many replicas does the vault keep?",
]


def make_adapters(base_dir: str, folder: Path, count: int) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(count):
        torch.manual_seed(1000 + i)
        config = LoraConfig(
            r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights="gaussian"
        )
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config)
        with torch.no_grad():  # trained adapters have non-zero B; gaussian init leaves B at zero
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.02)
        model.save_pretrained(str(folder / f"adapter-{i}"))
        paths.append(folder / f"adapter-{i}")
    return paths


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 4) if values else 0.0


async def run_clients(
    engine, prompts: list[list[int]], adapters: list, requests: int, max_tokens: int, switch=None
) -> dict:
    """`len(adapters)` clients, client i on adapters[i], each sending `requests` requests one after another."""
    from serving.engine import GenerationRequest, SamplingParams

    loop = asyncio.get_running_loop()
    ttft, latencies, tokens = [], [], 0
    switched: dict = {}

    async def client(i: int) -> None:
        nonlocal tokens
        for r in range(requests):
            adapter = switch[1] if switch and i == switch[0] and r == requests - 1 else adapters[i]
            request = GenerationRequest(
                prompts[(i + r) % len(prompts)], SamplingParams(max_tokens=max_tokens), adapter, loop
            )
            started = time.perf_counter()
            engine.submit(request)
            first = None
            while (event := await request.events.get()).kind == "delta":
                first = first or time.perf_counter()
            if event.kind == "error":
                raise RuntimeError(event.text)
            done = time.perf_counter()
            ttft.append((first or done) - started)
            latencies.append(done - started)
            tokens += event.completion_tokens
            if adapter is not adapters[i]:
                switched["latency"] = done - started

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(len(adapters))))
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "clients": len(adapters),
        "requests": len(latencies),
        "generated_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "latency_p50_s": percentile(latencies, 50),
    }
    if switched:
        others = [x for x in latencies if x != switched["latency"]]
        result["switch"] = {
            "latency_s": round(switched["latency"], 3),
            "others_median_s": round(statistics.median(others), 3),
            "extra_s": round(switched["latency"] - statistics.median(others), 3),
        }
    return result


def naive(
    model_dir: str, tokenizer, prompts: list[list[int]], adapters: list[Path], requests: int, max_tokens: int
) -> dict:
    """One request at a time, its adapter loaded for it (and unloaded after), with `generate`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ttft, tokens = [], 0
    started = time.perf_counter()
    for r in range(requests):
        began = time.perf_counter()
        model = PeftModel.from_pretrained(base, str(adapters[r % len(adapters)])).eval()
        prompt = torch.tensor([prompts[r % len(prompts)]])
        with torch.inference_mode():
            out = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        tokens += out.shape[1] - prompt.shape[1]
        base = model.unload()
        ttft.append(time.perf_counter() - began)  # without streaming, the first token arrives with the last
    seconds = time.perf_counter() - started
    return {
        "clients": 1,
        "requests": requests,
        "generated_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
    }


async def main_async(args) -> dict:
    from ml.base_model import load_model_and_tokenizer, materialize
    from ml.chat import prompt_ids
    from serving.engine import AdapterEngine, AdapterRef

    settings = Settings()
    model_dir = str(materialize(args.model, settings.model_cache_dir))
    model, tokenizer = load_model_and_tokenizer(args.model, settings.model_cache_dir, device="cpu")
    prompts = [prompt_ids(tokenizer, q) for q in QUESTIONS]
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_adapters(model_dir, Path(tmp), 9)
        refs = [AdapterRef(f"adapter-{i}", p) for i, p in enumerate(paths)]
        engine = AdapterEngine(model, tokenizer, max_adapters=8, max_batch=16, batch_window=0.01)
        engine.eos = set()  # every request generates exactly max_tokens
        await run_clients(engine, prompts, refs[:8], 1, 4)  # load the 8 adapters, warm up
        runs = {}
        for clients in (1, 4, 16):
            mixed = [refs[i % 8] for i in range(clients)]
            runs[f"mixed_{clients}"] = await run_clients(engine, prompts, mixed, args.requests, args.max_tokens)
            runs[f"single_{clients}"] = await run_clients(
                engine, prompts, [refs[0]] * clients, args.requests, args.max_tokens
            )
            print(
                clients,
                runs[f"mixed_{clients}"]["tokens_per_second"],
                runs[f"single_{clients}"]["tokens_per_second"],
                flush=True,
            )
        runs["switch_4"] = await run_clients(
            engine, prompts, [refs[i] for i in range(4)], args.requests, args.max_tokens, switch=(0, refs[8])
        )
        # the same mixed batches with peft's own mixed-adapter path (rows grouped per adapter), for comparison
        engine.use_batched_lora(False)
        for clients in (4, 16):
            runs[f"mixed_{clients}_peft_grouped"] = await run_clients(
                engine, prompts, [refs[i % 8] for i in range(clients)], args.requests, args.max_tokens
            )
        stats = dict(engine.stats)
        engine.close()
        baseline = naive(model_dir, tokenizer, prompts, paths[:8], args.naive_requests, args.max_tokens)
    speedup = runs["mixed_16"]["tokens_per_second"] / baseline["tokens_per_second"]
    mixed_vs_single = {
        c: round(runs[f"mixed_{c}"]["tokens_per_second"] / runs[f"single_{c}"]["tokens_per_second"], 3)
        for c in (1, 4, 16)
    }
    switch = runs["switch_4"]["switch"]
    return {
        "model": args.model,
        "adapters": 8,
        "max_tokens": args.max_tokens,
        "requests_per_client": args.requests,
        "runs": runs,
        "naive_one_at_a_time": baseline,
        "engine_stats": stats,
        "claims": {
            "16_clients_at_least_4x_naive": {"speedup": round(speedup, 2), "target": 4.0, "met": speedup >= 4.0},
            "mixed_within_10pct_of_single": {
                "ratio_by_clients": mixed_vs_single,
                "target": 0.9,
                "met": all(r >= 0.9 for r in mixed_vs_single.values()),
            },
            "alias_switch_costs_under_1s": {
                "extra_s": switch["extra_s"],
                "target_s": 1.0,
                "met": switch["extra_s"] < 1.0,
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--naive-requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    configure_process_environment()
    write_result("serving", asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
