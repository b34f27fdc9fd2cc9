"""LoRA fine-tuning as a plain loop: model, data, optimizer, loop, checkpoint.

Each optimizer step packs its examples into one row, so no padding token is ever computed:
- position ids restart per example, and attention runs per example (`ml.packed_attention`),
  so no example sees another and attention costs the sum of squared example lengths, not the
  square of the row;
- the vocabulary projection and the loss run only at positions that predict an answer token
  (the loss is on answers only), which skips most of the largest matmul of a small model.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.model_loading import exclusive
from ml.base_model import with_adapter
from ml.chat import training_ids
from ml.examples import Example
from ml.packed_attention import PACKED_ATTENTION
from ml.polarity_balance import balance_polarity
from ml.precision import Precision, autocast, uses_bf16
from schemas.workflow_io import Hyperparameters

logger = logging.getLogger(__name__)

# the linear layers that carry LoRA weights, by `Hyperparameters.lora_targets` (the names SmolLM2 and Gemma 3 share)
LORA_TARGETS: dict[str, list[str]] = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all_linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


@dataclass
class TrainingProgress:
    step: int
    total_steps: int
    loss: float
    tokens: int
    tokens_per_second: float


@dataclass
class TrainingSummary:
    steps: int
    total_steps: int
    resumed_from_step: int
    loss_curve: list[tuple[int, float]]
    useful_tokens: int
    seconds: float
    tokens_per_second: float
    examples: int
    device: str
    masks: dict[str, Any] = field(default_factory=dict)  # MaskStatistics.to_json()
    yes_no_copies_added: int = 0  # copies of the rarer yes/no answer's rows (Hyperparameters.balance_yes_no)
    precision: str = "fp32"  # what the matrix products computed in: bf16 (autocast) or fp32 (ml.precision)


class TrainingInterrupted(Exception):
    """Training stopped at a safe point (pause or cancel) after saving a checkpoint."""

    def __init__(self, step: int):
        super().__init__(f"training stopped at step {step} after checkpointing")
        self.step = step


@dataclass
class Checkpoint:
    """What a resumed run needs: adapter weights, optimizer, scheduler, step, RNG and the loss so far."""

    step: int
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    useful_tokens: int = 0

    @staticmethod
    def save(directory: Path, model, optimizer, scheduler, state: Checkpoint) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(directory / "adapter")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            },
            directory / "trainer_state.pt",
        )
        (directory / "checkpoint.json").write_text(json.dumps(asdict(state)))
        return directory

    @staticmethod
    def load_state(directory: Path) -> Checkpoint:
        data = json.loads((directory / "checkpoint.json").read_text())
        return Checkpoint(
            step=data["step"], loss_curve=[tuple(p) for p in data["loss_curve"]], useful_tokens=data["useful_tokens"]
        )


@dataclass
class MaskStatistics:
    """What the loss masks hold: examples and conversations trained, assistant turns and tokens supervised, and the
    examples left out with why."""

    examples: int = 0
    conversations: int = 0  # examples with turns before their question: every assistant turn of them is trained
    assistant_turns: int = 0
    supervised_tokens: int = 0
    tokens: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def supervised_share(self) -> float:
        return round(self.supervised_tokens / self.tokens, 4) if self.tokens else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "supervised_share": self.supervised_share}


def tokenize_with_masks(
    tokenizer, examples: list[Example], max_length: int
) -> tuple[list[tuple[list[int], list[int]]], MaskStatistics]:
    """(ids, labels) per example, each repeated `weight` times, and the masks' statistics (each example counted
    once); an example with no supervised token within `max_length` is left out, with its reason."""
    rows, stats = [], MaskStatistics()
    for example in examples:
        pair = training_ids(
            tokenizer, example.question, example.answer, max_length, example.context or None, example.history or None
        )
        if pair is None:
            reason = "no supervised token within max_seq_length"
            stats.rejected[reason] = stats.rejected.get(reason, 0) + 1
            continue
        ids, labels = pair
        stats.examples += 1
        stats.conversations += bool(example.history)
        stats.assistant_turns += sum(
            1 for i, label in enumerate(labels) if label != -100 and (i == 0 or labels[i - 1] == -100)
        )
        stats.supervised_tokens += sum(1 for label in labels if label != -100)
        stats.tokens += len(ids)
        rows.extend([pair] * example.copies)
    return rows, stats


def tokenize_examples(tokenizer, examples: list[Example], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per example, each repeated `weight` times; examples with no room for an answer are skipped."""
    return tokenize_with_masks(tokenizer, examples, max_length)[0]


def batch_order(n_rows: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """The indices of every step's examples, shuffled per epoch from the seed (so a resume replays the same order)."""
    generator = random.Random(seed)
    batches: list[list[int]] = []
    for _ in range(epochs):
        order = list(range(n_rows))
        generator.shuffle(order)
        batches.extend(order[i : i + batch_size] for i in range(0, n_rows, batch_size))
    return batches


@dataclass
class PackedBatch:
    """One optimizer step's examples as a single row, with what the loss needs."""

    input_ids: torch.Tensor  # (1, total tokens)
    position_ids: torch.Tensor  # (1, total tokens), restarting at 0 for each example
    cu_seq_lens: torch.Tensor  # (examples + 1,) where each example starts and the row ends
    loss_positions: torch.Tensor  # positions whose next token is an answer token
    targets: torch.Tensor  # those next tokens
    lengths: tuple[int, ...] = ()  # each example's length (plain ints: the attention needs them on the host)

    @property
    def tokens(self) -> int:
        return int(self.input_ids.numel())

    def to(self, device) -> PackedBatch:
        return PackedBatch(
            input_ids=self.input_ids.to(device),
            position_ids=self.position_ids.to(device),
            cu_seq_lens=self.cu_seq_lens.to(device),
            loss_positions=self.loss_positions.to(device),
            targets=self.targets.to(device),
            lengths=self.lengths,
        )


def pack(rows: list[tuple[list[int], list[int]]]) -> PackedBatch:
    """Concatenate examples into one row; position ids restart at 0 for each example."""
    ids: list[int] = []
    next_labels: list[int] = []
    positions: list[int] = []
    starts = [0]
    for row_ids, row_labels in rows:
        ids.extend(row_ids)
        # position i predicts token i + 1 of the same example; an example's last position predicts nothing
        next_labels.extend(row_labels[1:] + [-100])
        positions.extend(range(len(row_ids)))
        starts.append(len(ids))
    labels = torch.tensor(next_labels)
    loss_positions = (labels != -100).nonzero().squeeze(1)
    return PackedBatch(
        input_ids=torch.tensor([ids]),
        position_ids=torch.tensor([positions]),
        cu_seq_lens=torch.tensor(starts),
        loss_positions=loss_positions,
        targets=labels[loss_positions],
        lengths=tuple(len(row_ids) for row_ids, _ in rows),
    )


def packed_loss(model, batch: PackedBatch) -> torch.Tensor:
    """Mean cross-entropy over the batch's answer tokens (the same value as transformers' shifted loss)."""
    output = model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        cu_seq_lens_q=batch.cu_seq_lens,  # read by the packed attention: one causal attention per example
        packed_lengths=batch.lengths,
        logits_to_keep=batch.loss_positions,  # logits only where an answer token is predicted
        use_cache=False,
    )
    return torch.nn.functional.cross_entropy(output.logits[0].float(), batch.targets)


def build_lora_model(base_model, hp: Hyperparameters, init_adapter: Path | None):
    base_model.set_attn_implementation(PACKED_ATTENTION)
    if init_adapter is not None:
        return with_adapter(base_model, init_adapter, is_trainable=True)
    # new LoRA layers draw their initial weights from torch's init functions, which a load elsewhere patches
    with exclusive():
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=hp.lora_r,
            # peft annotates lora_alpha as int, but it scales by lora_alpha / r and takes any positive number
            lora_alpha=hp.lora_alpha,  # type: ignore[arg-type]
            lora_dropout=hp.lora_dropout,
            target_modules=LORA_TARGETS[hp.lora_targets],
            task_type="CAUSAL_LM",
        )
        return get_peft_model(base_model, config)


def train_lora(
    base_model,
    tokenizer,
    examples: list[Example],
    hp: Hyperparameters,
    output_dir: Path,
    *,
    init_adapter: Path | None = None,
    resume_from: Path | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 10,
    log_every: int = 10,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    precision: Precision = "auto",
) -> TrainingSummary:
    """Train a LoRA adapter on `examples` and save it (peft format) to `output_dir`.

    `init_adapter` continues an earlier adapter (incremental training); `resume_from` is a
    checkpoint folder of this same run. When `should_stop()` turns true the loop saves a
    checkpoint and raises `TrainingInterrupted`. Every `log_every` steps (and the last) it logs step, loss and tokens/s.
    `precision`: bf16 autocast or fp32 (`ml.precision`; `auto`: bf16 where the device computes it natively).
    """
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(hp.seed)
    random.seed(hp.seed)
    device = next(base_model.parameters()).device
    copies_before = sum(e.copies for e in examples)
    if hp.balance_yes_no:
        examples = balance_polarity(examples)
    rows, masks = tokenize_with_masks(tokenizer, examples, hp.max_seq_length)
    if not rows:
        raise ValueError("no trainable examples: every prompt is longer than max_seq_length")
    batches = batch_order(len(rows), hp.batch_size, hp.epochs, hp.seed)
    total_steps = min(len(batches), hp.max_steps) if hp.max_steps else len(batches)

    state = Checkpoint(step=0)
    if resume_from is not None:
        state = Checkpoint.load_state(resume_from)
        model = build_lora_model(base_model, hp, resume_from / "adapter")
    else:
        model = build_lora_model(base_model, hp, init_adapter)
    resumed_from_step = state.step
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hp.learning_rate, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=max(1, total_steps // 20), num_training_steps=total_steps
    )
    if resume_from is not None:
        saved = torch.load(resume_from / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["python_rng"])

    checkpoint_dir = checkpoint_dir or output_dir.parent / (output_dir.name + "-checkpoint")

    def checkpoint() -> None:
        Checkpoint.save(checkpoint_dir, model, optimizer, scheduler, state)
        if on_checkpoint:
            on_checkpoint(checkpoint_dir, state.step)

    started = time.perf_counter()
    tokens_this_run = 0
    while state.step < total_steps:
        if should_stop():
            checkpoint()
            raise TrainingInterrupted(state.step)
        batch = pack([rows[i] for i in batches[state.step]]).to(device)
        with autocast(device.type, precision):
            loss = packed_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        useful = batch.tokens  # every token is real: packing leaves no padding
        tokens_this_run += useful
        state.useful_tokens += useful
        loss_value = loss.item()
        state.loss_curve.append((state.step, round(loss_value, 5)))
        elapsed = time.perf_counter() - started
        progress = TrainingProgress(
            state.step, total_steps, loss_value, state.useful_tokens, tokens_this_run / max(elapsed, 1e-9)
        )
        if state.step % log_every == 0 or state.step == total_steps:
            logger.info(
                "step %d/%d loss %.4f %.1f tokens/s",
                state.step,
                total_steps,
                loss_value,
                progress.tokens_per_second,
                extra={
                    "step": state.step,
                    "total_steps": total_steps,
                    "loss": round(loss_value, 5),
                    "tokens_per_second": round(progress.tokens_per_second, 1),
                },
            )
        if on_progress:
            on_progress(progress)
        if state.step % checkpoint_every == 0 and state.step < total_steps:
            checkpoint()

    seconds = time.perf_counter() - started
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    return TrainingSummary(
        steps=state.step,
        total_steps=total_steps,
        resumed_from_step=resumed_from_step,
        loss_curve=state.loss_curve,
        useful_tokens=state.useful_tokens,
        seconds=round(seconds, 3),
        tokens_per_second=round(tokens_this_run / max(seconds, 1e-9), 1),
        examples=len(examples),
        device=device.type,
        masks=masks.to_json(),
        yes_no_copies_added=sum(e.copies for e in examples) - copies_before,
        precision="bf16" if uses_bf16(device.type, precision) else "fp32",
    )
