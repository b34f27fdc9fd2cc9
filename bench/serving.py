"""Serving many adapters on one base: the engine behind `wlops serve` (continuous batching) against static batching
and against what a user would pick instead, peft's batched `generate` with every adapter kept loaded.

The workload (the same for every system, drawn from a seed per repeat):
- `--clients` clients, each sending `--requests` requests one after another, waiting an exponential think time
  (mean `--think-ms`) before each, so arrivals are Poisson-like and never in lockstep;
- each request asks one of 8 questions, on one of 8 LoRA adapters (r=16 on q/k/v/o, random non-zero weights: the
  shapes and cost of trained ones) and for a length drawn between 8 and `--max-tokens` tokens (end-of-turn ignored,
  so every system generates exactly the same tokens).

The systems:
- `continuous`: the engine as `wlops serve` runs it: waiting requests join the running batch at the next decode step;
- `static`: the same engine with `join_running=False`: a request that arrives mid-decode waits for the batch to end
  (the baseline of the issue's targets: everything else, the batched LoRA and the streaming, is the same);
- `peft_generate`: a server loop a user would write: take every waiting request (up to 16), left-pad them and call
  peft's `generate(adapter_names=...)` with the adapters loaded once; `generate` cannot stream a batch, so its first
  token reaches the client with its last.

Reported per system and configuration, over `--repeats` repeats (workload seeds 0, 1, ...; the mean and the spread):
generated tokens/s, time to first token p50/p99, time per output token p50, latency p50. Also:
- mixed vs single adapter: the continuous engine at 1, 4 and 16 clients with each request on a random adapter of the
  8 (mixed) or all on one (single); at 1 client too, a mixed client's requests change adapter;
- the alias switch: while 4 clients run, a request for a 9th adapter nobody has used (as after an alias move): its
  latency against the others', and the same request on an idle engine against a warm one (the unloaded baseline).

Targets (the serving issue): at 16 clients, the continuous engine's time-to-first-token p99 <= 0.5x static
batching's, and its throughput >= 1.5x.

    python -m bench.serving [--repeats 3] [--clients 16] [--device cpu|cuda] [--random-weights DIR] [--name NAME]

`--random-weights DIR` builds the model from the config and tokenizer saved in DIR with random weights (for a GPU
machine that cannot receive the weights file); the default is SmolLM2-135M-Instruct's real weights.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import random
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
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
ADAPTERS = 8
MIN_TOKENS = 8


@dataclass(frozen=True)
class Planned:
    """One request of the workload: when its client sends it (after thinking), what it asks and how much it gets."""

    think_s: float
    prompt: int  # index into the prompts
    adapter: int  # index into the adapters
    max_tokens: int


@dataclass
class Done:
    ttft_s: float
    latency_s: float
    tokens: int


def plan(
    clients: int,
    requests: int,
    seed: int,
    *,
    mixed: bool,
    think_ms: float,
    max_tokens: int,
    prompts: int = len(QUESTIONS),
) -> list[list[Planned]]:
    """Each client's requests, drawn from `seed` (the same for every system measured), each asking one of `prompts`."""
    rng = random.Random(seed)
    return [
        [
            Planned(
                think_s=rng.expovariate(1000 / think_ms),
                prompt=rng.randrange(prompts),
                adapter=rng.randrange(ADAPTERS) if mixed else 0,
                max_tokens=rng.randint(MIN_TOKENS, max_tokens),
            )
            for _ in range(requests)
        ]
        for _ in range(clients)
    ]


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 4) if values else 0.0


def summary(done: list[Done], seconds: float) -> dict[str, Any]:
    tokens = sum(d.tokens for d in done)
    per_token = [(d.latency_s - d.ttft_s) / (d.tokens - 1) for d in done if d.tokens > 1]
    return {
        "requests": len(done),
        "generated_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2),
        "ttft_p50_s": percentile([d.ttft_s for d in done], 50),
        "ttft_p99_s": percentile([d.ttft_s for d in done], 99),
        "tpot_p50_s": percentile(per_token, 50),
        "latency_p50_s": percentile([d.latency_s for d in done], 50),
    }


def over_repeats(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's mean, min and max over the repeats, with the repeats themselves."""
    figures = ("tokens_per_second", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "latency_p50_s")
    return {
        **{f: round(statistics.mean(r[f] for r in repeats), 4) for f in figures},
        "spread": {f: [min(r[f] for r in repeats), max(r[f] for r in repeats)] for f in figures},
        "repeats": repeats,
    }


async def run_engine(engine, workload: list[list[Planned]], prompts: list[list[int]], refs: list) -> dict[str, Any]:
    """The clients of `workload` against an `AdapterEngine`, streaming."""
    from serving.engine import GenerationRequest, SamplingParams

    loop = asyncio.get_running_loop()
    done: list[Done] = []

    async def client(requests: list[Planned]) -> None:
        for planned in requests:
            await asyncio.sleep(planned.think_s)
            request = GenerationRequest(
                prompts[planned.prompt], SamplingParams(max_tokens=planned.max_tokens), refs[planned.adapter], loop
            )
            started = time.perf_counter()
            engine.submit(request)
            first = None
            while (event := await request.events.get()).kind == "delta":
                first = first or time.perf_counter()
            if event.kind == "error":
                raise RuntimeError(event.text)
            finished = time.perf_counter()
            done.append(Done((first or finished) - started, finished - started, event.completion_tokens))

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in workload))
    return summary(done, time.perf_counter() - started)


class PeftGenerateServer:
    """What a user would write with peft alone: a thread that takes every waiting request (up to `max_batch`) and runs
    them as one `generate(adapter_names=...)`, to the longest length any of them asked for."""

    def __init__(self, model, tokenizer, names: list[str], max_batch: int = 16):
        self.model, self.tokenizer, self.names, self.max_batch = model, tokenizer, names, max_batch
        self.requests: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.requests.put(None)
        self.thread.join(timeout=60)

    def _run(self) -> None:
        import torch

        from ml.evaluator import left_pad

        device = next(self.model.parameters()).device
        while (first := self.requests.get()) is not None:
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self.requests.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                batch.append(more)
            ids, attention = left_pad([p for p, _, _, _ in batch], self.tokenizer.pad_token_id)
            longest = max(n for _, _, n, _ in batch)
            with torch.inference_mode():
                self.model.generate(
                    input_ids=ids.to(device),
                    attention_mask=attention.to(device),
                    adapter_names=[self.names[a] for _, a, _, _ in batch],
                    max_new_tokens=longest,
                    min_new_tokens=longest,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            for _, _, n, answered in batch:
                answered(n)

    async def run(self, workload: list[list[Planned]], prompts: list[list[int]]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        done: list[Done] = []

        async def client(requests: list[Planned]) -> None:
            for planned in requests:
                await asyncio.sleep(planned.think_s)
                answered: asyncio.Future = loop.create_future()
                started = time.perf_counter()
                self.requests.put(
                    (
                        prompts[planned.prompt],
                        planned.adapter,
                        planned.max_tokens,
                        lambda n, f=answered: loop.call_soon_threadsafe(f.set_result, n),
                    )
                )
                tokens = await answered
                latency = time.perf_counter() - started
                done.append(Done(latency, latency, tokens))  # no streaming: the first token comes with the last

        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in workload))
        return summary(done, time.perf_counter() - started)


def make_adapters(model, folder: Path, count: int) -> list[Path]:
    """`count` adapters of `model` saved under `folder`, adapter i drawn from seed 1000 + i."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    peft_model = get_peft_model(copy.deepcopy(model).cpu(), config)
    paths = []
    for i in range(count):
        torch.manual_seed(1000 + i)
        with torch.no_grad():  # trained adapters have non-zero B; a fresh adapter's B is zero
            for name, parameter in peft_model.named_parameters():
                if "lora_A" in name:
                    parameter.normal_(0, 1 / 16)
                elif "lora_B" in name:
                    parameter.normal_(0, 0.02)
        peft_model.save_pretrained(str(folder / f"adapter-{i}"))
        paths.append(folder / f"adapter-{i}")
    return paths


def load(args) -> tuple[Any, Any]:
    """The base model on `args.device`, from real weights or random ones (`--random-weights DIR`)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ml.base_model import load_model_and_tokenizer

    if args.random_weights is None:
        return load_model_and_tokenizer(args.model, Settings().model_cache_dir, device=args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.random_weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(args.random_weights)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(args.device).eval(), tokenizer


async def measure(args) -> dict[str, Any]:
    import copy

    from peft import PeftModel

    from ml.chat import prompt_ids
    from serving.engine import AdapterEngine, AdapterRef

    model, tokenizer = load(args)
    prompts = [prompt_ids(tokenizer, q) for q in QUESTIONS]
    seeds = range(args.repeats)
    shape = {"requests": args.requests, "think_ms": args.think_ms, "max_tokens": args.max_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_adapters(model, Path(tmp), ADAPTERS + 1)
        refs = [AdapterRef(f"adapter-{i}", p) for i, p in enumerate(paths)]
        reference = copy.deepcopy(model)  # peft's server gets its own copy: the engine wraps its model in place
        engine = AdapterEngine(model, tokenizer, max_adapters=ADAPTERS, max_batch=16, batch_window=0.01)
        engine.eos = set()  # every request generates exactly its max_tokens
        await run_engine(engine, [[Planned(0, 0, a, 4)] for a in range(ADAPTERS)], prompts, refs)  # load, warm up
        runs: dict[str, Any] = {}

        async def engine_runs(key: str, clients: int, mixed: bool) -> None:
            repeats = []
            for seed in seeds:
                repeats.append(await run_engine(engine, plan(clients, seed=seed, mixed=mixed, **shape), prompts, refs))
            runs[key] = {"clients": clients, **over_repeats(repeats)}
            print(key, runs[key]["tokens_per_second"], runs[key]["ttft_p99_s"], flush=True)

        await engine_runs(f"continuous_{args.clients}", args.clients, True)
        engine.join_running = False
        await engine_runs(f"static_{args.clients}", args.clients, True)
        engine.join_running = True
        for clients in (1, 4, 16):
            if clients != args.clients:
                await engine_runs(f"continuous_{clients}", clients, True)
            await engine_runs(f"single_{clients}", clients, False)
        switch = await alias_switch(engine, prompts, refs, shape)
        stats = dict(engine.stats)
        engine.close()

        peft_model = PeftModel.from_pretrained(reference, str(paths[0]), adapter_name="adapter-0")
        for i in range(1, ADAPTERS):
            peft_model.load_adapter(str(paths[i]), adapter_name=f"adapter-{i}")
        server = PeftGenerateServer(peft_model.eval(), tokenizer, [f"adapter-{i}" for i in range(ADAPTERS)])
        repeats = [await server.run(plan(args.clients, seed=s, mixed=True, **shape), prompts) for s in seeds]
        runs[f"peft_generate_{args.clients}"] = {"clients": args.clients, **over_repeats(repeats)}
        server.close()
    return {"runs": runs, "switch": switch, "engine_stats": stats, **claims(runs, switch, args.clients)}


async def alias_switch(engine, prompts, refs, shape) -> dict[str, Any]:
    """A request for an adapter nobody has used yet (the 9th), under 4 clients' load and on an idle engine."""
    from serving.engine import GenerationRequest, SamplingParams

    loop = asyncio.get_running_loop()

    async def alone(adapter) -> float:
        request = GenerationRequest(prompts[0], SamplingParams(max_tokens=16), adapter, loop)
        started = time.perf_counter()
        engine.submit(request)
        while (await request.events.get()).kind == "delta":
            pass
        return time.perf_counter() - started

    background = asyncio.ensure_future(run_engine(engine, plan(4, seed=7, mixed=True, **shape), prompts, refs))
    await asyncio.sleep(1.0)
    loaded = await alone(refs[ADAPTERS])  # evicts one of the 8
    others = await background
    engine.model.delete_adapter(refs[ADAPTERS].name)
    engine.loaded.pop(refs[ADAPTERS].name)
    engine.use_batched_lora(True)
    idle_cold = await alone(refs[ADAPTERS])
    idle_warm = await alone(refs[ADAPTERS])
    return {
        "under_load": {"latency_s": round(loaded, 3), "others_latency_p50_s": others["latency_p50_s"]},
        "idle": {"first_use_latency_s": round(idle_cold, 3), "loaded_latency_s": round(idle_warm, 3)},
        "load_cost_idle_s": round(idle_cold - idle_warm, 3),
    }


def claims(runs: dict[str, Any], switch: dict[str, Any], clients: int) -> dict[str, Any]:
    continuous, static = runs[f"continuous_{clients}"], runs[f"static_{clients}"]
    ttft = continuous["ttft_p99_s"] / static["ttft_p99_s"]
    throughput = continuous["tokens_per_second"] / static["tokens_per_second"]
    mixed_vs_single = {
        c: round(runs[f"continuous_{c}"]["tokens_per_second"] / runs[f"single_{c}"]["tokens_per_second"], 3)
        for c in (1, 4, 16)
    }
    peft = runs[f"peft_generate_{clients}"]
    return {
        "claims": {
            "joining_ttft_p99_at_most_half_of_static": {"ratio": round(ttft, 3), "target": 0.5, "met": ttft <= 0.5},
            "throughput_at_least_1_5x_static": {
                "ratio": round(throughput, 3),
                "target": 1.5,
                "met": throughput >= 1.5,
            },
        },
        "against_peft_generate": {
            "throughput_ratio": round(continuous["tokens_per_second"] / peft["tokens_per_second"], 3),
            "ttft_p99_ratio": round(continuous["ttft_p99_s"] / peft["ttft_p99_s"], 3),
        },
        "mixed_vs_single_throughput": mixed_vs_single,
        "alias_switch_extra_under_load_s": round(
            switch["under_load"]["latency_s"] - switch["under_load"]["others_latency_p50_s"], 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--random-weights", type=Path, default=None, help="a folder with config.json and a tokenizer")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3, help="requests per client")
    parser.add_argument("--think-ms", type=float, default=500.0, help="mean think time before each request")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    configure_process_environment()
    result = asyncio.run(measure(args))
    settings = {k: v for k, v in vars(args).items() if k not in ("name", "random_weights")}
    write_result(
        args.name or f"serving_{args.device}",
        {"settings": settings, "weights": "random" if args.random_weights else "real", **result},
    )


if __name__ == "__main__":
    main()
