"""Many LoRA adapters on one base model, in one process: the generation engine behind `wlops serve`.

Design: **continuous batching with a step-wise decode loop: rows join the running batch between decode steps and
leave it as they finish.**

- One engine thread per base model owns the model; requests reach it through a queue, so a long generation
  never blocks the server's event loop. Tokens go back to each request's own asyncio queue as they are made.
- Idle, the thread takes the first request, then whatever else arrives within `batch_window` (a few ms), up to
  `max_batch` requests, and decodes them together, **whatever adapter each uses**: peft runs a batch with
  mixed adapters (`adapter_names`, one per row; `__base__` for the base model), so a request never waits for
  others of its own adapter.
- Busy, it takes whatever has arrived before each decode step: the newcomers' prompts are prefilled together and
  their cache rows join the running batch (`serving.running_batch`), so a request waits one step, not a whole batch.
  `join_running=False` keeps the old static batching (a request waits for the running batch to end), the baseline
  that `bench/serving` measures against. A model whose cache has sliding-window layers cannot take rows mid-decode:
  its requests wait for the batch to end.
- The decode loop is ours (prefill, then one token per step with a KV cache) rather than `generate`, so each
  row samples with its own temperature, top_p and seed, streams its own tokens, and stops on its own stop
  strings; a finished row leaves the batch at once (its rows of the KV cache are dropped, and the columns only it
  needed), so the rest run at the smaller batch's cost. A row whose client left leaves at its next step, and a
  request whose client left before it was admitted is never prefilled.
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
from ml.precision import Precision, autocast
from serving.batched_lora import BatchedLoRA
from serving.running_batch import RunningBatch, can_merge

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
    completion_tokens: int = 0  # a delta: the tokens made so far; done: all of them


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
            self.request.emit(Event("delta", text[self.sent : end], completion_tokens=len(self.tokens)))
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
        join_running: bool = True,
        precision: Precision = "fp32",
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
        self.stats = {"batches": 0, "rows": 0, "joined": 0, "steps": 0, "adapter_loads": 0, "evictions": 0}
        self.join_running = join_running  # False: static batching, a request waits for the running batch to end
        self.batched_lora = batched_lora
        self.precision = precision  # bf16 autocast or fp32 (ml.precision): the evaluation's, so served as evaluated
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
        running: RunningBatch | None = None
        while True:
            if running is None and not self._pending:
                first = self._queue.get()  # idle: wait for a request, then a short window for its companions
                if first is None:
                    break
                self._pending.append(first)
                if not self._gather(time.perf_counter() + self.batch_window):
                    break
            elif not self._gather(None):  # busy: take whatever has arrived, without waiting
                break
            if self._pending and (running is None or self.join_running):
                running = self._admit(running)
            if running is not None:
                running = self._step(running)
        self._stop(running)

    def _gather(self, deadline: float | None) -> bool:
        """Move arrived requests to the pending list, waiting until `deadline` (None: not at all) while fewer than
        `max_batch` wait; False when the engine is asked to stop."""
        while len(self._pending) < self.max_batch:
            try:
                if deadline is None:
                    more = self._queue.get_nowait()
                else:
                    more = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                return True
            if more is None:
                return False
            self._pending.append(more)
        return True

    def _stop(self, running: RunningBatch | None) -> None:
        decoding = [row.request for row in running.rows] if running else []
        for request in [*decoding, *self._pending]:
            request.emit(Event("error", text="the serving engine stopped"))

    def _admit(self, running: RunningBatch | None) -> RunningBatch | None:
        """Prefill the waiting requests that fit beside `running` and add their rows to it (or make them a batch)."""
        joining = self._take_batch(running)
        if not joining:
            return running
        try:
            in_use = {r.adapter.name for r in self._pending if r.adapter} | set(running.names if running else [])
            self._ensure_loaded({r.adapter for r in joining if r.adapter is not None}, busy=in_use)
            joined = self._prefill(joining)
        except Exception as exc:  # the newcomers fail; the running rows go on
            log.exception("generation failed")
            for request in joining:
                request.emit(Event("error", text=f"generation failed: {exc}"))
            return running
        if running is None:
            return joined
        if joined is not None:
            self.stats["joined"] += len(joined)
            running.merge(joined)
        return running

    def _take_batch(self, running: RunningBatch | None) -> list[GenerationRequest]:
        """The oldest waiting requests that fit beside `running`: up to `max_batch` rows in all, using at most
        `max_adapters` distinct adapters. A request whose client has already left ends here, unprefilled."""
        room = self.max_batch - (len(running) if running else 0)
        if running is not None and not can_merge(running.cache):
            room = 0  # this model's cache cannot take rows mid-decode: they wait for the batch to end
        adapters = {n for n in running.names if n != BASE} if running else set()
        batch: list[GenerationRequest] = []
        rest: list[GenerationRequest] = []
        for request in self._pending:
            if request.cancelled:
                request.emit(Event("done", finish_reason="cancelled"))
                continue
            name = request.adapter.name if request.adapter else None
            fits = name is None or name in adapters or len(adapters) < self.max_adapters
            if len(batch) < room and fits:
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

    def _prefill(self, requests: list[GenerationRequest]) -> RunningBatch | None:
        """Run the prompts of `requests` together (left-padded) and sample each row's first token: a batch ready to
        decode or to join the running one (None: every row already finished)."""
        from transformers import DynamicCache

        from ml.evaluator import left_pad  # torch and the metrics load with the first batch, not with the server

        rows = [_Row(r, self.tokenizer, self.torch) for r in requests]
        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, attention = left_pad([r.prompt_ids for r in requests], pad)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        names = [r.adapter.name if r.adapter else BASE for r in requests]
        cache = DynamicCache()
        with self.torch.inference_mode():
            logits = self._forward(ids, attention, positions, cache, names)
        batch = RunningBatch(rows, names, cache, attention, positions[:, -1], self._sample(logits, rows))
        return self._settle(batch)

    def _step(self, batch: RunningBatch) -> RunningBatch | None:
        """One decode step of every row of `batch`: feed each its last token, sample its next; None once none is
        left. A failed step fails its rows, not the engine."""
        try:
            with self.torch.inference_mode():
                ids, attention, positions = batch.next_inputs()
                logits = self._forward(ids, attention, positions, batch.cache, batch.names)
            self.stats["steps"] += 1
            batch.tokens = self._sample(logits, batch.rows)
            return self._settle(batch)
        except Exception as exc:
            log.exception("generation failed")
            for row in batch.rows:
                row.request.emit(Event("error", text=f"generation failed: {exc}"))
            return None

    def _settle(self, batch: RunningBatch) -> RunningBatch | None:
        """Give each row its sampled token; finished (or cancelled) rows end and leave the batch and its cache."""
        for row, token in zip(batch.rows, batch.tokens.tolist(), strict=True):
            row.add(token, self.eos)
        still = [slot for slot, row in enumerate(batch.rows) if row.finish is None]
        for row in batch.rows:
            if row.finish is not None:
                row.done()
        if not still:
            return None
        batch.keep(still)
        return batch

    def _forward(self, ids, attention, positions, cache, names: list[str]):
        from peft import PeftModel

        device = next(self.model.parameters()).device
        extra: dict[str, Any] = {}
        if self._batched is not None:
            self._batched.select(names, device)
        elif isinstance(self.model, PeftModel):
            extra["adapter_names"] = names
        with autocast(device.type, self.precision):
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
