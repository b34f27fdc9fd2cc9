"""Would a per-row or paged KV cache pay here? What padding costs the serving engine's decode steps.

The engine keeps one KV cache for its running batch (`serving.running_batch`): every row left-padded to the longest
*remaining* row, the leading columns dropped as rows leave. A per-row or paged cache (vLLM's PagedAttention) would
let each row attend to its own tokens only, so the most it can save is what a decode step spends on padding columns.
This measures that bound, on the traffic where rows differ most, questions asked with retrieval:

1. **Padding in the engine's batches.** The sample's 47 test questions with their top-3 passages from its knowledge
   base, as `wlops serve` asks a version grounded on it (whole chunks, the default, and cut to 3 statements, as the
   demo's version is), sent by 16 clients with Poisson-like arrivals and 8–64 tokens each, joined into the running
   batch as they come (`bench/serving`'s traffic). Every decode step's rows, columns and tokens are recorded: the
   padding share is the cache's columns that hold no token.
2. **What a column costs.** Decode steps of 16 rows timed with caches of several widths (the real weights, random
   cached keys and values): the step time's slope per column, by least squares.
3. **The bound.** Per recorded step, its padding columns × the slope, over the step's measured time: the share of
   decode time that a cache without padding would save if it cost nothing else (a paged cache adds its block-table
   gathers; a per-row one gives up the batched attention).

    python -m bench.kv_cache [--repeats 3] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import numpy as np

from bench.common import write_result
from bench.serving import ADAPTERS, Planned, make_adapters, plan, run_engine
from core.settings import Settings
from ml.base_model import SMOLLM2_ALIAS

ROWS = 16
WIDTHS = (64, 128, 256, 384, 512)
STEPS_PER_WIDTH = 6


def retrieval_prompts(tokenizer, statements: int | None) -> list[list[int]]:
    """The sample's test questions with the passages `wlops serve` would retrieve for them (top-3 chunks), whole or
    cut to `statements` statements, as chat prompts."""
    from bench.training_levers import prepare
    from knowledge.embeddings import embed
    from ml.chat import prompt_ids
    from ml.focused_context import focused

    test = prepare().splits.test
    if statements:
        test = focused(test, embed, statements)
    return [prompt_ids(tokenizer, e.question, e.context) for e in test]


class StepRecorder:
    """Wraps the engine's decode step: each step's rows, cache columns, cached tokens and seconds."""

    def __init__(self, engine) -> None:
        self.steps: list[tuple[int, int, int, float]] = []
        self._step = engine._step

        def recorded(batch):
            rows, columns, tokens = len(batch), batch.columns, int(batch.attention.sum())
            started = time.perf_counter()
            out = self._step(batch)
            self.steps.append((rows, columns + 1, tokens + rows, time.perf_counter() - started))
            return out

        engine._step = recorded

    def take(self) -> list[tuple[int, int, int, float]]:
        steps, self.steps = self.steps, []
        return steps


def padding_of(steps: list[tuple[int, int, int, float]]) -> dict[str, Any]:
    slots = sum(rows * columns for rows, columns, _, _ in steps)
    tokens = sum(t for _, _, t, _ in steps)
    return {
        "decode_steps": len(steps),
        "mean_rows": round(statistics.fmean(r for r, _, _, _ in steps), 2),
        "mean_columns": round(statistics.fmean(c for _, c, _, _ in steps), 1),
        "padding_share": round(1 - tokens / slots, 4),
        "step_seconds_p50": round(statistics.median(s for _, _, _, s in steps), 4),
    }


def column_cost(model, rows: int = ROWS) -> dict[str, Any]:
    """Decode steps of `rows` rows timed at each of `WIDTHS` cached columns (the median of `STEPS_PER_WIDTH`), and
    the least-squares line through them: seconds per step = intercept + slope × columns."""
    import torch
    from transformers import DynamicCache

    config = model.config
    heads = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    medians = {}
    with torch.inference_mode():
        for width in WIDTHS:
            times = []
            for _ in range(STEPS_PER_WIDTH):
                cache = DynamicCache()
                for layer in range(config.num_hidden_layers):
                    shape = (rows, heads, width, head_dim)
                    cache.update(torch.randn(shape), torch.randn(shape), layer)
                ids = torch.randint(100, 1000, (rows, 1))
                attention = torch.ones((rows, width + 1), dtype=torch.long)
                positions = torch.full((rows, 1), width, dtype=torch.long)
                started = time.perf_counter()
                model(input_ids=ids, attention_mask=attention, position_ids=positions, past_key_values=cache)
                times.append(time.perf_counter() - started)
            medians[width] = statistics.median(times)
    slope, intercept = np.polyfit(list(medians), list(medians.values()), 1)
    return {
        "rows": rows,
        "step_seconds_by_columns": {w: round(t, 4) for w, t in medians.items()},
        "intercept_s": round(float(intercept), 5),
        "slope_s_per_column": round(float(slope), 7),
    }


def bound(steps: list[tuple[int, int, int, float]], slope_at_rows: float, rows_measured: int) -> float:
    """The share of these steps' time that padding columns cost, at the measured slope (scaled to each step's rows:
    attention over the cache grows with rows × columns)."""
    saved = sum(slope_at_rows * rows / rows_measured * (columns - tokens / rows) for rows, columns, tokens, _ in steps)
    return saved / sum(s for _, _, _, s in steps)


async def measure(args) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    from ml.base_model import load_model_and_tokenizer
    from serving.engine import AdapterEngine, AdapterRef

    model, tokenizer = load_model_and_tokenizer(args.model, Settings().model_cache_dir)
    cost = column_cost(model)
    print("column cost", cost, flush=True)
    result: dict[str, Any] = {"column_cost": cost, "traffic": {}}
    shape = {"requests": args.requests, "think_ms": args.think_ms, "max_tokens": args.max_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        refs = [AdapterRef(f"adapter-{i}", p) for i, p in enumerate(make_adapters(model, Path(tmp), ADAPTERS))]
        engine = AdapterEngine(model, tokenizer, max_adapters=ADAPTERS, max_batch=ROWS, batch_window=0.01)
        engine.eos = set()  # every request generates exactly its max_tokens
        recorder = StepRecorder(engine)
        for name, statements in (("whole_chunks", None), ("three_statements", 3)):
            prompts = retrieval_prompts(tokenizer, statements)
            await run_engine(engine, [[Planned(0, 0, a, 4)] for a in range(ADAPTERS)], prompts, refs)  # load, warm up
            recorder.take()
            repeats = []
            for seed in range(args.repeats):
                workload = plan(args.clients, seed=seed, mixed=True, prompts=len(prompts), **shape)
                served = await run_engine(engine, workload, prompts, refs)
                steps = recorder.take()
                repeats.append(
                    {
                        **padding_of(steps),
                        "padding_time_bound": round(bound(steps, cost["slope_s_per_column"], ROWS), 4),
                        "tokens_per_second": served["tokens_per_second"],
                    }
                )
            lengths = [len(p) for p in prompts]
            result["traffic"][name] = {
                "prompt_tokens": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)},
                "padding_share": round(statistics.fmean(r["padding_share"] for r in repeats), 4),
                "padding_time_bound": round(statistics.fmean(r["padding_time_bound"] for r in repeats), 4),
                "spread": {
                    key: [min(r[key] for r in repeats), max(r[key] for r in repeats)]
                    for key in ("padding_share", "padding_time_bound")
                },
                "repeats": repeats,
            }
            print(name, result["traffic"][name]["padding_share"], result["traffic"][name]["padding_time_bound"])
        engine.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=SMOLLM2_ALIAS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--think-ms", type=float, default=500.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--name", default="kv_cache")
    args = parser.parse_args()
    write_result(args.name, {"clients": args.clients, "requests": args.requests, **asyncio.run(measure(args))})


if __name__ == "__main__":
    main()
