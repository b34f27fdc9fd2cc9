"""Contextual calibration of the yes/no verdict (Zhao et al. 2021, "Calibrate before use"): does removing the model's
prior for "Yes" make it read its passage better?

A model tuned on the sample answers "Yes" too readily. For each yes/no question (one with a `polarity` check) the
verdict is read from the first answer token, log P(Yes) − log P(No) with the question's passage, then calibrated by
subtracting the same difference for a content-free prompt: the question with the passage "N/A" (`question_prior`),
or "N/A" for both (`content_free`). Each decision is compared with the generated answer's verdict (`generated`,
judged by its checks) and with the raw first token (`first_token`).

Trained as the demo trains (focused contexts, "Yes" and "No" balanced; `bench/training_levers`' `polarity_balanced`
arm at 40,000 tokens) for each seed, and untuned with `--untuned`. Read on the feedback split; the test split beside.

    python -m bench.yes_no_calibration [--seeds 7] [--untuned] [--out yes_no_calibration]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import write_result
from bench.training_levers import ARMS, DEFAULT_BUDGET_TOKENS, MODEL, PRECISIONS, budget_hyperparameters, prepare
from core.settings import Settings
from ml.examples import Example
from ml.polarity_balance import polarity_of
from ml.precision import cpu_has_native_bf16, model_autocast

CONTENT_FREE = "N/A"


def yes_minus_no(model, tokenizer, questions: list[str], contexts: list[list[str]], precision) -> list[float]:
    """log P(Yes) − log P(No) of each prompt's first answer token ("Yes"/"yes" against "No"/"no")."""
    import torch

    from ml.chat import prompt_ids
    from ml.evaluator import left_pad

    yes = [tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Yes", "yes")]
    no = [tokenizer.encode(w, add_special_tokens=False)[0] for w in ("No", "no")]
    ids, attention = left_pad(
        [prompt_ids(tokenizer, q, c) for q, c in zip(questions, contexts, strict=True)], tokenizer.pad_token_id
    )
    with torch.no_grad(), model_autocast(model, precision):
        logits = model(input_ids=ids, attention_mask=attention).logits[:, -1].float()
    log_p = torch.log_softmax(logits, -1)
    return (torch.logsumexp(log_p[:, yes], -1) - torch.logsumexp(log_p[:, no], -1)).tolist()


def decisions_right(examples: list[Example], differences: list[float], priors: list[float]) -> int:
    """The questions whose calibrated verdict (difference − prior > 0 is "yes") is the one their check asks for."""
    return sum((d - p > 0) == (polarity_of(e) == "yes") for e, d, p in zip(examples, differences, priors, strict=True))


def measure(model, tokenizer, examples: list[Example], precision) -> dict:
    from ml.evaluator import generate_answers, verdict_of

    questions = [e.question for e in examples]
    with model_autocast(model, precision):
        answers = generate_answers(model, tokenizer, questions, contexts=[e.context for e in examples])
    raw = yes_minus_no(model, tokenizer, questions, [e.context for e in examples], precision)
    prior = yes_minus_no(model, tokenizer, questions, [[CONTENT_FREE]] * len(examples), precision)
    free = yes_minus_no(model, tokenizer, [CONTENT_FREE], [[CONTENT_FREE]], precision) * len(examples)  # one prompt
    return {
        "questions": len(examples),
        "asking_yes": sum(polarity_of(e) == "yes" for e in examples),
        "generated": sum(bool(verdict_of(e, a)[0]) for e, a in zip(examples, answers, strict=True)),
        "first_token": decisions_right(examples, raw, [0.0] * len(examples)),
        "question_prior": decisions_right(examples, raw, prior),
        "content_free": decisions_right(examples, raw, free),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[7])
    parser.add_argument("--untuned", action="store_true", help="also measure the base model, untuned")
    default_precision = "bf16-train" if cpu_has_native_bf16() else "fp32"
    parser.add_argument("--precision", choices=list(PRECISIONS), default=default_precision)
    parser.add_argument("--out", default="yes_no_calibration")
    args = parser.parse_args()
    from ml.base_model import load_model_and_tokenizer
    from ml.trainer import train_lora

    arm = ARMS["polarity_balanced"](prepare())
    polar = {s: [e for e in getattr(arm.splits, s) if polarity_of(e)] for s in ("feedback", "test")}
    train_precision, answer_precision = PRECISIONS[args.precision]
    settings = Settings()
    runs = []
    for seed in ([None] if args.untuned else []) + args.seeds:
        model, tokenizer = load_model_and_tokenizer(MODEL, settings.model_cache_dir)
        if seed is not None:
            hp, _ = budget_hyperparameters(tokenizer, arm.splits.train, DEFAULT_BUDGET_TOKENS, seed)
            with tempfile.TemporaryDirectory() as folder:
                train_lora(model, tokenizer, arm.splits.train, hp, Path(folder) / "adapter", precision=train_precision)
        figures = {s: measure(model, tokenizer, polar[s], answer_precision) for s in polar}
        runs.append({"model": "untuned" if seed is None else "demo's training", "seed": seed, **figures})
        print(runs[-1], flush=True)
    write_result(args.out, {"precision": args.precision, "budget_tokens": DEFAULT_BUDGET_TOKENS, "runs": runs})


if __name__ == "__main__":
    main()
