"""What bf16 autocast saves a CPU worker against fp32, on the demo's training and evaluation work.

A CPU with AVX512-BF16 (or AMX) multiplies bf16 natively; `ml.precision` then runs the trainer, the evaluation and
the serving engine under `torch.autocast(bfloat16)` (weights kept in fp32). The reference is fp32, what PyTorch and
transformers compute in on a CPU unless told otherwise, and what WLOps did before. Both arms run the same work in
the same process, alternating which goes first, `--repeats` times:

- training: `ml.trainer.train_lora` with the demo's settings (LoRA r 16, batches of 8, passages cut to 3 statements)
  for `--steps` steps from the base model: useful tokens per second;
- evaluation: as `activities/evaluate.py` does it, both held-out splits answered with passages and closed book
  (greedy, up to 32 tokens, batches of 48) and the training split's loss (batches of 16 by length), by the untuned
  SmolLM2-135M-Instruct: seconds.

Whether bf16 costs right answers is measured apart, with trained adapters, by `bench/training_levers --precisions
fp32 bf16`; here the answers of the two arms are only counted where they differ.

    python -m bench.precision [--repeats 2] [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_result
from core.settings import Settings
from ml.base_model import SMOLLM2_ALIAS
from ml.precision import Precision, cpu_has_native_bf16, model_autocast

ARMS: tuple[Precision, ...] = ("fp32", "bf16")
SPLITS = ("feedback", "test")


def train_seconds(splits, precision: Precision, steps: int, settings: Settings) -> dict[str, float]:
    """`steps` training steps of the demo's first round from a freshly loaded base model."""
    from cli.demo import DEMO_HYPERPARAMETERS, DEMO_RAG
    from ml.base_model import load_model_and_tokenizer
    from ml.trainer import train_lora
    from schemas.workflow_io import Hyperparameters

    model, tokenizer = load_model_and_tokenizer(SMOLLM2_ALIAS, settings.model_cache_dir)
    demo: dict[str, Any] = {**DEMO_HYPERPARAMETERS, "max_seq_length": DEMO_RAG["max_seq_length"], "max_steps": steps}
    hp = Hyperparameters(**demo)
    with tempfile.TemporaryDirectory() as folder:
        summary = train_lora(model, tokenizer, splits.train, hp, Path(folder) / "adapter", precision=precision)
    return {"train_seconds": summary.seconds, "train_tokens_per_second": summary.tokens_per_second}


def evaluation_seconds(model, tokenizer, splits, precision: Precision) -> tuple[dict[str, float], dict[str, list]]:
    """The evaluation's generation and loss work in `precision`: seconds per part, and the answers and losses."""
    from ml.evaluator import generate_answers, per_example_loss

    seconds: dict[str, float] = {}
    out: dict[str, list] = {}
    with model_autocast(model, precision):
        for mode in ("rag", "closed_book"):
            started = time.perf_counter()
            for split in SPLITS:
                examples = getattr(splits, split)
                contexts = [e.context for e in examples] if mode == "rag" else None
                out[f"{split}/{mode}"] = generate_answers(
                    model, tokenizer, [e.question for e in examples], 48, 32, contexts=contexts
                )
            seconds[mode] = time.perf_counter() - started
        started = time.perf_counter()
        out["train_loss"] = per_example_loss(model, tokenizer, splits.train, 384, 16)
        seconds["train_loss"] = time.perf_counter() - started
    seconds["evaluation"] = sum(seconds.values())
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="training steps per arm and repeat")
    parser.add_argument("--name", default="precision", help="the result's name: bench/results/<name>.json")
    args = parser.parse_args()

    from bench.training_levers import focused_context, prepare
    from ml.base_model import load_model_and_tokenizer

    settings = Settings()
    splits = focused_context(prepare()).splits
    model, tokenizer = load_model_and_tokenizer(SMOLLM2_ALIAS, settings.model_cache_dir)
    times: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    outputs: dict[str, dict[str, list]] = {}
    for repeat in range(args.repeats):
        for arm in ARMS[:: 1 if repeat % 2 == 0 else -1]:
            seconds, outputs[arm] = evaluation_seconds(model, tokenizer, splits, arm)
            seconds |= train_seconds(splits, arm, args.steps, settings)
            times[arm].append({k: round(v, 2) for k, v in seconds.items()})
            print(arm, times[arm][-1], flush=True)
    median = {arm: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for arm, runs in times.items()}
    speedup = {
        k: round(median["fp32"][k] / median["bf16"][k], 3) for k in median["fp32"] if k != "train_tokens_per_second"
    }
    speedup["train_tokens_per_second"] = round(
        median["bf16"]["train_tokens_per_second"] / median["fp32"]["train_tokens_per_second"], 3
    )
    answers_changed = {
        key: sum(a != b for a, b in zip(outputs["fp32"][key], outputs["bf16"][key], strict=True))
        for key in outputs["fp32"]
        if key != "train_loss"
    }
    loss_change = [
        abs(b - a) / a for a, b in zip(outputs["fp32"]["train_loss"], outputs["bf16"]["train_loss"], strict=True) if a
    ]
    write_result(
        args.name,
        {
            "model": SMOLLM2_ALIAS,
            "cpu_has_native_bf16": cpu_has_native_bf16(),
            "workload": {
                "questions": {split: len(getattr(splits, split)) for split in SPLITS},
                "train_rows": len(splits.train),
                "context": "top-3 passages cut to 3 statements (the demo's)",
                "training_steps": args.steps,
                "max_new_tokens": 32,
            },
            "repeats": args.repeats,
            "seconds": times,
            "median": {arm: {k: round(v, 2) for k, v in m.items()} for arm, m in median.items()},
            "bf16_speedup_against_fp32": speedup,
            "untuned_answers_changed_by_bf16": answers_changed,
            "train_loss_median_relative_change": round(statistics.median(loss_change), 4),
        },
    )


if __name__ == "__main__":
    main()
