"""What batching prompts by length saves an evaluation, against batches in the questions' order.

An evaluation asks each held-out split twice (with retrieval, closed book) and computes the training split's loss;
`make demo` spends about 40% of its time there. On CPU a forward pass is compute-bound, so every padding token costs
as much as a real one. The reference is the evaluator before this bench: the 47 questions of a split in one batch of
48 in their order, padded to the longest prompt, and the training split's loss in batches of 16 in its order. The
other arm batches both by length: the answers in batches of near neighbours of at most 48 prompts and 3,072 padded
prompt tokens (`length_batches`, here: short closed-book prompts share one batch, prompts with passages split into
two or three), the loss in batches of 16 near neighbours (`ml.evaluator.per_example_loss(sort_by_length=True)`).

The workload is the demo's: the sample's splits, each question with its top-3 passages cut to the 3 statements
nearest it (`context_statements: 3`), the untuned SmolLM2-135M-Instruct, greedy answers of up to 32 tokens. Both arms
run on the same loaded model, alternating which goes first, `--repeats` times; the answers of the two arms are
compared (batching changes the padding, so the float sums can differ in their last bits).

    python -m bench.evaluation_speed [--repeats 2] [--name evaluation_speed]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import write_result
from core.settings import Settings
from ml.base_model import SMOLLM2_ALIAS

ARMS = {  # (generation batch, padded tokens a batch may hold: None is one batch in the questions' order)
    "reference": (48, None),
    "by_length": (48, 3072),
}
SPLITS = ("feedback", "test")


def length_batches(lengths: list[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    """The indices, shortest first, in batches of at most `max_rows` whose padded size (rows × the longest) stays
    within `max_tokens` (a batch always takes one row)."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if not batches or len(batches[-1]) >= max_rows or (len(batches[-1]) + 1) * lengths[i] > max_tokens:
            batches.append([i])
        else:
            batches[-1].append(i)
    return batches


def answers_by_length(model, tokenizer, questions: list[str], contexts, rows: int, tokens: int) -> list[str]:
    """`generate_answers` over batches of near neighbours by prompt length, in the questions' order."""
    from ml.chat import prompt_ids
    from ml.evaluator import generate_answers

    asked = contexts or [[] for _ in questions]
    lengths = [len(prompt_ids(tokenizer, q, c)) for q, c in zip(questions, asked, strict=True)]
    out = [""] * len(questions)
    for batch in length_batches(lengths, rows, tokens):
        got = generate_answers(
            model, tokenizer, [questions[i] for i in batch], len(batch), 32, contexts=[asked[i] for i in batch]
        )
        for i, answer in zip(batch, got, strict=True):
            out[i] = answer
    return out


def evaluate_once(
    model, tokenizer, splits, batch: int, batch_tokens: int | None
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """One evaluation's generation and loss work: seconds per part, and the answers."""
    from ml.evaluator import generate_answers, per_example_loss

    seconds: dict[str, float] = {}
    answers: dict[str, list[str]] = {}
    for mode in ("rag", "closed_book"):
        started = time.perf_counter()
        for split in SPLITS:
            examples = getattr(splits, split)
            questions = [e.question for e in examples]
            contexts = [e.context for e in examples] if mode == "rag" else None
            answers[f"{split}/{mode}"] = (
                generate_answers(model, tokenizer, questions, batch, 32, contexts=contexts)
                if batch_tokens is None
                else answers_by_length(model, tokenizer, questions, contexts, batch, batch_tokens)
            )
        seconds[mode] = time.perf_counter() - started
    started = time.perf_counter()
    per_example_loss(model, tokenizer, splits.train, 384, 16, sort_by_length=batch_tokens is not None)
    seconds["train_loss"] = time.perf_counter() - started
    seconds["total"] = sum(seconds.values())
    return seconds, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--name", default="evaluation_speed", help="the result's name: bench/results/<name>.json")
    args = parser.parse_args()

    from bench.training_levers import focused_context, prepare
    from ml.base_model import load_model_and_tokenizer

    splits = focused_context(prepare()).splits
    model, tokenizer = load_model_and_tokenizer(SMOLLM2_ALIAS, Settings().model_cache_dir)
    times: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    answers: dict[str, dict[str, list[str]]] = {}
    for repeat in range(args.repeats):
        for arm in list(ARMS)[:: 1 if repeat % 2 == 0 else -1]:
            seconds, answers[arm] = evaluate_once(model, tokenizer, splits, *ARMS[arm])
            times[arm].append({k: round(v, 2) for k, v in seconds.items()})
            print(arm, times[arm][-1], flush=True)
    median = {arm: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for arm, runs in times.items()}
    changed = {
        key: sum(a != b for a, b in zip(answers["reference"][key], answers["by_length"][key], strict=True))
        for key in answers["reference"]
    }
    write_result(
        args.name,
        {
            "model": SMOLLM2_ALIAS,
            "workload": {
                "questions": {split: len(getattr(splits, split)) for split in SPLITS},
                "train_rows": len(splits.train),
                "context": "top-3 passages cut to 3 statements (the demo's)",
                "max_new_tokens": 32,
            },
            "arms": {arm: {"generation_batch": b, "batch_tokens": t} for arm, (b, t) in ARMS.items()},
            "repeats": args.repeats,
            "seconds": times,
            "median_seconds": {arm: {k: round(v, 2) for k, v in m.items()} for arm, m in median.items()},
            "speedup_against_reference": {
                k: round(median["reference"][k] / median["by_length"][k], 3) for k in median["reference"]
            },
            "answers_changed": changed,
        },
    )


if __name__ == "__main__":
    main()
