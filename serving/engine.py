"""Many LoRA adapters on one base model, in one process: the generation engine behind `wlops serve`.

Design: **dynamic batching with a step-wise decode loop in which rows leave as they finish.**

- One engine thread per base model owns the model; requests reach it through a queue, so a long generation
  never blocks the server's event loop. Tokens go back to each request's own asyncio queue as they are made.
- The thread takes the first waiting request, then whatever else arrives within `batch_window` (a few ms),
  up to `max_batch` requests, and decodes them together, **whatever adapter each uses**: peft runs a batch with
  mixed adapters (`adapter_names`, one per row; `__base__` for the base model), so a request never waits for
  others of its own adapter.
- The decode loop is ours (prefill, then one token per step with a KV cache) rather than `generate`, so each
  row samples with its own temperature, top_p and seed, streams its own tokens, and stops on its own stop
  strings; a finished row leaves the batch at once (its rows of the KV cache are dropped), so the rest run
  at the smaller batch's cost. A request that arrives mid-decode waits for the next batch (a row joining a
  running batch would need its prompt prefilled into the shared cache; at these model sizes a batch lasts
  seconds, and the window keeps it short).
- The rows' low-rank updates are computed together (`serving.batched_lora`: each row's A and B gathered into one
  batched matmul per projection, as Punica's BGMV does), not per adapter group as peft's `adapter_names` path does;
  `batched_lora=False` uses peft's path (the benchmark compares both).
- Adapters are loaded on first use (`load_adapter`, never merged into the base) and kept in an LRU set of
  `max_adapters`; an adapter a queued or running request uses is never evicted. A batch takes only as many
  distinct adapters as fit; the other requests wait for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.model_loading import exclusive
from serving.batched_lora import BatchedLoRA

log = logging.getLogger(__name__)
BASE = "__base__"


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdapterRef:
    """An adapter to load: its name in the engine (the version's id) and its local folder."""

    name: str
    path: Path


@dataclass
class Event:
    kind: str  # delta | done | error
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    params: SamplingParams
    adapter: AdapterRef | None  # None: the base model
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False  # no one listens any more: its row leaves the batch at its next token

    def emit(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def cancel(self) -> None:
        """Stop generating for this request (its client left); called from the event loop's thread."""
        self.cancelled = True


class _Row:
    """One request's decoding state: its tokens, text already sent, sampler."""

    def __init__(self, request: GenerationRequest, tokenizer, torch):
        self.request = request
        self.params = request.params
        self.tokens: list[int] = []
        self.sent = 0  # characters of the text already emitted
        self.finish: str | None = None
        self.generator = None
        if self.params.temperature > 0:
            self.generator = torch.Generator()
            self.generator.manual_seed(
                self.params.seed if self.params.seed is not None else int(time.time_ns() % 2**63)
            )
        self.tokenizer = tokenizer
        self.holdback = max((len(s) for s in self.params.stop), default=1) - 1

    def add(self, token: int, eos: set[int]) -> None:
        if self.request.cancelled:
            self.finish = "cancelled"
            return
        if token in eos:
            self.finish = "stop"
            self._flush()
            return
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        for stop in self.params.stop:
            at = text.find(stop, max(0, self.sent - len(stop)))
            if at != -1:
                self.finish = "stop"
                self._emit_until(text, at)
                return
        if len(self.tokens) >= self.params.max_tokens:
            self.finish = "length"
            self._flush()
            return
        if not text.endswith("\ufffd"):  # a multi-byte character still incomplete: wait for its next token
            self._emit_until(text, len(text) - self.holdback)

    def _flush(self) -> None:
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        self._emit_until(text, len(text))

    def _emit_until(self, text: str, end: int) -> None:
        if end > self.sent:
            self.request.emit(Event("delta", text[self.sent : end]))
            self.sent = end

    def done(self) -> None:
        self.request.emit(Event("done", finish_reason=self.finish or "length", completion_tokens=len(self.tokens)))


class AdapterEngine:
    """The engine thread of one base model (see the module's docstring)."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_adapters: int = 8,
        max_batch: int = 16,
        batch_window: float = 0.01,
        batched_lora: bool = True,
    ):
        import torch

        self.torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_adapters = max_adapters
        self.max_batch = max_batch
        self.batch_window = batch_window
        self.context_limit = int(getattr(model.config, "max_position_embeddings", 2048))
        self.eos = {
            t
            for t in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None))
            if isinstance(t, int)
        }
        self.loaded: OrderedDict[str, Path] = OrderedDict()  # adapter name -> folder, least recently used first
        self.stats = {"batches": 0, "rows": 0, "adapter_loads": 0, "evictions": 0}
        self.batched_lora = batched_lora
        self._batched: BatchedLoRA | None = None
        self._queue: queue.Queue[GenerationRequest | None] = queue.Queue()
        self._pending: list[GenerationRequest] = []
        self._thread = threading.Thread(target=self._run, name="wlops-engine", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    # ------------------------------------------------------------ the engine thread

    def _run(self) -> None:
        while True:
            if not self._pending:
                first = self._queue.get()
                if first is None:
                    return
                self._pending.append(first)
            deadline = time.perf_counter() + self.batch_window
            while len(self._pending) < self.max_batch:
                try:
                    more = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if more is None:
                    return
                self._pending.append(more)
            batch = self._take_batch()
            try:
                self._ensure_loaded(
                    {r.adapter for r in batch if r.adapter is not None},
                    busy={r.adapter.name for r in self._pending if r.adapter},
                )
                self._decode(batch)
            except Exception as exc:  # one bad batch must not stop the engine
                log.exception("generation failed")
                for request in batch:
                    request.emit(Event("error", text=f"generation failed: {exc}"))

    def _take_batch(self) -> list[GenerationRequest]:
        """The oldest requests, up to `max_batch`, using at most `max_adapters` distinct adapters."""
        batch: list[GenerationRequest] = []
        rest: list[GenerationRequest] = []
        adapters: set[str] = set()
        for request in self._pending:
            name = request.adapter.name if request.adapter else None
            fits = name is None or name in adapters or len(adapters) < self.max_adapters
            if len(batch) < self.max_batch and fits:
                batch.append(request)
                if name:
                    adapters.add(name)
            else:
                rest.append(request)
        self._pending = rest
        return batch

    def _ensure_loaded(self, adapters: set[AdapterRef], busy: set[str]) -> None:
        with exclusive():  # a first import of peft is not safe beside a model load in another thread
            from peft import PeftModel

        needed = {a.name for a in adapters}
        changed = False
        for adapter in sorted(adapters, key=lambda a: a.name):
            if adapter.name in self.loaded:
                self.loaded.move_to_end(adapter.name)
                continue
            while len(self.loaded) >= self.max_adapters:
                victim = next((n for n in self.loaded if n not in needed and n not in busy), None)
                if victim is None:
                    break
                self.model.delete_adapter(victim)
                del self.loaded[victim]
                self.stats["evictions"] += 1
            with exclusive():  # adapter layers are built like any model: never while another thread loads one
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(adapter.path), adapter_name=adapter.name)
                else:
                    self.model = PeftModel.from_pretrained(
                        self.model, str(adapter.path), adapter_name=adapter.name
                    ).eval()
            self.loaded[adapter.name] = adapter.path
            self.stats["adapter_loads"] += 1
            changed = True
        if changed:  # the stacks follow what is loaded (a new adapter may adapt other projections)
            self.use_batched_lora(self.batched_lora)

    def use_batched_lora(self, enabled: bool) -> None:
        """Compute the rows' low-rank updates batched (True) or with peft's per-adapter groups; between batches only."""
        from peft import PeftModel

        if self._batched is not None:
            self._batched.remove()
            self._batched = None
        self.batched_lora = enabled
        if enabled and isinstance(self.model, PeftModel):
            self._batched = BatchedLoRA(self.model)
            self._batched.rebuild(list(self.loaded))

    def _decode(self, batch: list[GenerationRequest]) -> None:
        from ml.evaluator import left_pad  # torch and the metrics load with the first batch, not with the server

        torch = self.torch
        rows = [_Row(r, self.tokenizer, torch) for r in batch]
        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        ids, attention = left_pad(
            [r.prompt_ids for r in batch], self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        )
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        names = [r.adapter.name if r.adapter else BASE for r in batch]
        active = list(range(len(rows)))
        from transformers import DynamicCache

        cache = DynamicCache()
        with torch.inference_mode():
            logits = self._forward(ids, attention, positions, cache, names)
            last_position = positions[:, -1]
            while True:
                tokens = self._sample(logits, [rows[i] for i in active])
                for slot, i in enumerate(active):
                    rows[i].add(int(tokens[slot]), self.eos)
                still = [slot for slot, i in enumerate(active) if rows[i].finish is None]
                for i in active:
                    if rows[i].finish is not None:
                        rows[i].done()
                if not still:
                    return
                if len(still) < len(active):  # finished rows leave the batch and its cache
                    keep = torch.tensor(still)
                    cache.batch_select_indices(keep)
                    attention, last_position, tokens = attention[keep], last_position[keep], tokens[keep]
                    names = [names[s] for s in still]
                    active = [active[s] for s in still]
                attention = torch.cat([attention, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
                last_position = last_position + 1
                logits = self._forward(tokens[:, None], attention, last_position[:, None], cache, names)

    def _forward(self, ids, attention, positions, cache, names: list[str]):
        from peft import PeftModel

        device = next(self.model.parameters()).device
        extra: dict[str, Any] = {}
        if self._batched is not None:
            self._batched.select(names, device)
        elif isinstance(self.model, PeftModel):
            extra["adapter_names"] = names
        out = self.model(
            input_ids=ids.to(device),
            attention_mask=attention.to(device),
            position_ids=positions.to(device),
            past_key_values=cache,
            use_cache=True,
            **extra,
        )
        return out.logits[:, -1].float().cpu()

    def _sample(self, logits, rows: list[_Row]):
        torch = self.torch
        tokens = torch.empty(len(rows), dtype=torch.long)
        for i, row in enumerate(rows):
            if row.generator is None:
                tokens[i] = int(torch.argmax(logits[i]))
                continue
            probs = torch.softmax(logits[i] / row.params.temperature, dim=-1)
            if row.params.top_p < 1.0:
                ordered, order = torch.sort(probs, descending=True)
                outside = ordered.cumsum(-1) - ordered > row.params.top_p
                ordered[outside] = 0
                probs = torch.zeros_like(probs).scatter(0, order, ordered)
            tokens[i] = int(torch.multinomial(probs / probs.sum(), 1, generator=row.generator))
        return tokens
