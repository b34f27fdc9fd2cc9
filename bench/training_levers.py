"""Training levers side by side, at equal training tokens (the CPU's minutes, free of what else runs on it): one
round of LoRA training from the base model on the shipped sample's training split with passages from its fact sheet,
then every feedback and test question asked with retrieval and judged by its fact checks.

Each arm changes one thing against `reference` (today's task: RAFT passages, the reference answers as targets). The
levers are chosen on the feedback split; the test split is reported beside it and never used to choose.

    python -m bench.training_levers [--arms reference polar_pairs ...] [--baseline ARM] [--budget-tokens N] [--seeds 7]
        [--model M]

`--baseline` names the arm the others are compared with (`reference` by default; a lever built on focused contexts
is compared with `focused_context`, run in the same invocation). Each split's right answers are also counted by the
answer a yes/no question expects (`by_polarity`).

`--precisions fp32 bf16 bf16-train` runs every arm in each precision (`ml.precision`): bf16 autocast in training and
answering, bf16 in training only (answers in fp32), or fp32; an arm in another precision than fp32 is named
`arm@bf16`. The default is fp32, in which the earlier results were measured.

`--lora-targets attention all_linear` runs every arm with LoRA on the attention projections (the default) and on every
linear layer of the decoder, attention and MLP (`ml.trainer.LORA_TARGETS`); the second is named `arm+all_linear`.

`--contexts 3x3 5x2` prepares the passages both ways: 3 chunks retrieved per question and cut to 3 statements (the
demo's), and 5 cut to 2; the focused arms use the cut, and an arm on other contexts than the demo's is named
`arm+5x2`. `--baseline-runs FILE` takes the baseline arm's runs from an earlier results file instead of running them
again (they reproduce seed for seed).

`--arms qa_first` trains QA rows first and the knowledge base's chunks as plain text after (pre-instruction-tuning);
`--closed-book` also asks every held-out question without its passages (`feedback_closed_book`, `test_closed_book`),
where knowledge trained from the documents would show.

`--model` takes any base model of the catalog (`ml.base_model.KNOWN_MODELS`); `--budget-tokens 0` asks the untuned
base model (no training), the baseline of a lever that changes the model. `--trainer full` trains every weight of the
model instead of a LoRA adapter (the same batches, loss, schedule and clipping; `--learning-rate` sets its rate, which
full fine-tuning wants far lower than LoRA's).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from bench.common import write_result
from cli.demo import DEMO_HYPERPARAMETERS, DEMO_KNOWLEDGE_BASE, DEMO_RAG, SAMPLE_DATASET, SAMPLE_KNOWLEDGE
from core.settings import Settings
from facts.stats import wilson_interval
from knowledge.chunking import ChunkingConfig
from knowledge.documents import media_type_of
from knowledge.embeddings import count_tokens, embed
from knowledge.index import KnowledgeIndex
from knowledge.ingest import SourceDocument, build_index
from ml.base_model import KNOWN_MODELS, SMOLLM2_ALIAS
from ml.counterfactual_values import with_counterfactual_twins
from ml.examples import Example
from ml.focused_context import focused
from ml.optimizer import Splits, clean_dataset, split_examples
from ml.passage_answers import in_passage_words
from ml.polar_questions import polar_questions
from ml.polarity_balance import balance_polarity, polarity_of
from ml.precision import Precision, model_autocast
from ml.quoted_answers import quoted, shown_answer
from ml.retrieval_context import ContextConfig, held_out_contexts, training_contexts
from ml.verdict_last import with_verdicts_last
from schemas.workflow_io import LORA_TARGET_CHOICES, Hyperparameters

MODEL = SMOLLM2_ALIAS
# the demo's first round: 20 steps of 8 examples with three 48-token passages each
DEFAULT_BUDGET_TOKENS = 40_000


@dataclasses.dataclass
class Prepared:
    index: KnowledgeIndex
    splits: Splits  # train with RAFT passages, feedback and test with the passages retrieved for their questions
    max_new_tokens: int = 32  # what the model may write when asked
    top_k: int = DEMO_RAG["retrieval_top_k"]  # chunks retrieved per question
    statements: int = DEMO_RAG["context_statements"]  # what the focused arms cut them to
    shown: Callable[[str], str] = str.strip  # what of its reply is shown and judged
    # texts trained as plain text (a loss on every token), mixed into the second half of the QA rows
    # (`qa_first`); none for the other arms
    documents: list[str] = dataclasses.field(default_factory=list)

    @property
    def contexts(self) -> str:
        """`KxS`: K chunks retrieved per question, cut to S statements by the focused arms."""
        return f"{self.top_k}x{self.statements}"


def sample_index() -> KnowledgeIndex:
    files = sorted(p for p in SAMPLE_KNOWLEDGE.iterdir() if p.is_file())
    documents = [SourceDocument(p.stem, 1, p.name, media_type_of(p.name)) for p in files]
    config = ChunkingConfig(
        chunk_tokens=int(str(DEMO_KNOWLEDGE_BASE["chunk_tokens"])),
        overlap_tokens=int(str(DEMO_KNOWLEDGE_BASE["chunk_overlap_tokens"])),
    )
    by_id = {p.stem: p for p in files}
    return build_index(documents, None, lambda d: by_id[d.document_id].read_bytes(), embed, count_tokens, config).index


def prepare(top_k: int = DEMO_RAG["retrieval_top_k"], statements: int = DEMO_RAG["context_statements"]) -> Prepared:
    index = sample_index()
    cleaned = clean_dataset(SAMPLE_DATASET, "jsonl")
    splits = split_examples(cleaned.examples)
    config = ContextConfig(top_k=top_k, seed=1)
    train = training_contexts(index, splits.train, embed, config)
    feedback, _, _ = held_out_contexts(index, splits.feedback, embed, config)
    test, _, _ = held_out_contexts(index, splits.test, embed, config)
    return Prepared(index, Splits(train, feedback, test), top_k=top_k, statements=statements)


Lever = Callable[[Prepared], Prepared]


def reference(prepared: Prepared) -> Prepared:
    return prepared


def passage_words(prepared: Prepared) -> Prepared:
    """The training answers restated from their supporting passages."""
    train, _ = in_passage_words(prepared.splits.train, {c.chunk_id: c for c in prepared.index.chunks})
    return dataclasses.replace(prepared, splits=dataclasses.replace(prepared.splits, train=train))


def polar_pairs(prepared: Prepared) -> Prepared:
    """The training split plus yes/no questions with both answers from the knowledge base's statements."""
    config = ContextConfig(top_k=prepared.top_k, seed=1)
    extra = training_contexts(prepared.index, polar_questions(prepared.index.chunks), embed, config)
    return dataclasses.replace(
        prepared, splits=dataclasses.replace(prepared.splits, train=prepared.splits.train + extra)
    )


def focused_context(prepared: Prepared) -> Prepared:
    """Every prompt's passages cut to the statements nearest its question (three in the demo), in training and when
    asked."""
    splits, keep = prepared.splits, prepared.statements
    return dataclasses.replace(
        prepared,
        splits=Splits(
            focused(splits.train, embed, keep), focused(splits.feedback, embed, keep), focused(splits.test, embed, keep)
        ),
    )


def polarity_balanced(prepared: Prepared) -> Prepared:
    """Focused contexts, and the yes/no training rows weighted so that "Yes" and "No" are trained equally often."""
    focused_arm = focused_context(prepared)
    train = balance_polarity(focused_arm.splits.train)
    return dataclasses.replace(focused_arm, splits=dataclasses.replace(focused_arm.splits, train=train))


def balanced_polar_pairs(prepared: Prepared) -> Prepared:
    """The demo's training (focused contexts, "Yes" and "No" balanced) plus yes/no questions with both answers from
    the knowledge base's statements: each asked with the statement it was written from, when that is the nearest."""
    return polarity_balanced(polar_pairs(prepared))


def verdict_last(prepared: Prepared) -> Prepared:
    """The demo's training (focused contexts, "Yes" and "No" balanced), each yes/no answer written fact first and
    verdict last ("…, so no."; `ml/verdict_last.py`)."""
    balanced = polarity_balanced(prepared)
    train = with_verdicts_last(balanced.splits.train)
    return dataclasses.replace(balanced, splits=dataclasses.replace(balanced.splits, train=train))


def without_yes_no(prepared: Prepared) -> Prepared:
    """Focused contexts, and no yes/no row trained: the base model's reading of yes/no questions is left as it is,
    the training tokens go to the other rows."""
    focused_arm = focused_context(prepared)
    train = [e for e in focused_arm.splits.train if polarity_of(e) is None]
    return dataclasses.replace(focused_arm, splits=dataclasses.replace(focused_arm.splits, train=train))


def quote_then_answer(prepared: Prepared) -> Prepared:
    """Focused contexts, and RAFT's quote-then-answer targets: the statement that holds the fact, then the answer;
    only the answer is judged."""
    focused_arm = focused_context(prepared)
    train = quoted(focused_arm.splits.train)
    return dataclasses.replace(
        focused_arm,
        splits=dataclasses.replace(focused_arm.splits, train=train),
        max_new_tokens=96,
        shown=shown_answer,
    )


def counterfactual_values(prepared: Prepared) -> Prepared:
    """The demo's training (focused contexts, "Yes" and "No" balanced), and each row whose number is in its passages
    followed by a twin whose passages and answer state another number (`ml/counterfactual_values.py`)."""
    balanced = polarity_balanced(prepared)
    train = with_counterfactual_twins(balanced.splits.train)
    return dataclasses.replace(balanced, splits=dataclasses.replace(balanced.splits, train=train))


def qa_first(prepared: Prepared) -> Prepared:
    """Pre-instruction-tuning (PIT++, Jiang et al. 2024): the demo's training (focused contexts, "Yes" and "No"
    balanced) on its own for the first half of its rows, then the second half mixed with the knowledge base's chunks
    trained as plain text (`DOCUMENT_PASSES` times each), at the same training tokens: the model learns how questions
    are asked of a text before it reads the text."""
    balanced = polarity_balanced(prepared)
    return dataclasses.replace(balanced, documents=[c.text for c in prepared.index.chunks])


def all_levers(prepared: Prepared) -> Prepared:
    return focused_context(polar_pairs(passage_words(prepared)))


ARMS: dict[str, Lever] = {
    "reference": reference,
    "passage_words": passage_words,
    "polar_pairs": polar_pairs,
    "focused_context": focused_context,
    "all_levers": all_levers,
    "polarity_balanced": polarity_balanced,
    "balanced_polar_pairs": balanced_polar_pairs,
    "without_yes_no": without_yes_no,
    "verdict_last": verdict_last,
    "quote_then_answer": quote_then_answer,
    "counterfactual_values": counterfactual_values,
    "qa_first": qa_first,
}


def mean_row_tokens(tokenizer, examples: list[Example], max_length: int) -> float:
    from ml.trainer import tokenize_with_masks

    rows, _ = tokenize_with_masks(tokenizer, examples, max_length)
    return statistics.fmean(len(ids) for ids, _ in rows)


def judged(examples: list[Example], answers: list[str]) -> dict:
    from ml.evaluator import verdict_of

    verdicts = [verdict_of(e, a)[0] for e, a in zip(examples, answers, strict=True)]
    right_ids = [e.id for e, v in zip(examples, verdicts, strict=True) if v]
    right = len(right_ids)
    low, high = wilson_interval(right, len(examples))
    return {
        "right": right,
        "n": len(examples),
        "accuracy": round(right / len(examples), 4),
        "interval": [round(low, 4), round(high, 4)],
        "wrong": [
            {"question": e.question, "answer": a, "expected": e.answer}
            for e, a, v in zip(examples, answers, verdicts, strict=True)
            if not v
        ],
        "right_ids": right_ids,
        "by_polarity": by_polarity(examples, set(right_ids)),
    }


def by_polarity(examples: list[Example], right_ids: set[str]) -> dict[str, list[int]]:
    """[right, asked] for the questions whose answer is "yes", those whose answer is "no", and the rest: a lever that
    only moves the model's yes/no prior gains on one and loses on the other."""
    out = {"yes": [0, 0], "no": [0, 0], "other": [0, 0]}
    for e in examples:
        tally = out[polarity_of(e) or "other"]
        tally[0] += e.id in right_ids
        tally[1] += 1
    return out


def train_steps(
    model, batches: list[list[tuple[list[int], list[int]]]], hp: Hyperparameters, precision: Precision
) -> tuple[int, int, float]:
    """`ml.trainer.train_lora`'s loop over the given batches of (ids, labels) rows: packed, AdamW over the trainable
    weights, warm-up and linear decay, gradient clipping. (steps, training tokens, seconds)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from ml.trainer import pack, packed_loss

    model.train()
    weights = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(weights, lr=hp.learning_rate, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, len(batches) // 20), len(batches))
    tokens, started = 0, time.perf_counter()
    for rows in batches:
        batch = pack(rows)
        with model_autocast(model, precision):
            loss = packed_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch.tokens
    model.eval()
    return len(batches), tokens, time.perf_counter() - started


def train_full(
    model, tokenizer, examples: list[Example], hp: Hyperparameters, precision: Precision = "fp32"
) -> tuple[int, int, float]:
    """Every weight trained, no adapter, in `train_steps`'s loop. (steps, training tokens, seconds)."""
    import torch

    from ml.packed_attention import PACKED_ATTENTION
    from ml.trainer import batch_order, tokenize_with_masks

    torch.manual_seed(hp.seed)
    rows, _ = tokenize_with_masks(tokenizer, examples, hp.max_seq_length)
    batches = batch_order(len(rows), hp.batch_size, hp.epochs, hp.seed)
    total = min(len(batches), hp.max_steps or len(batches))
    model.set_attn_implementation(PACKED_ATTENTION)
    return train_steps(model, [[rows[i] for i in b] for b in batches[:total]], hp, precision)


DOCUMENT_PASSES = 2  # how often `qa_first` trains each chunk of the knowledge base


def document_rows(tokenizer, texts: list[str], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Each text as a plain-text training row ending in the tokenizer's end token (SmolLM2-Instruct's `<|im_end|>`,
    which also ends its answers), every token supervised."""
    rows = []
    for text in texts:
        ids = (tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[:max_length]
        rows.append((ids, list(ids)))
    return rows


def qa_first_batches(
    qa_rows: list[tuple[list[int], list[int]]],
    documents: list[tuple[list[int], list[int]]],
    budget_tokens: int,
    batch_size: int,
    seed: int,
) -> list[list[tuple[list[int], list[int]]]]:
    """The batches of `qa_first`: the QA rows in `batch_order`'s shuffled epochs, as many as the tokens the documents
    leave of the budget; their first half alone, then their second half shuffled together with the documents."""
    import random

    from ml.trainer import batch_order

    document_tokens = sum(len(ids) for ids, _ in documents)
    per_row = statistics.fmean(len(ids) for ids, _ in qa_rows)
    n_qa = max(2, round((budget_tokens - document_tokens) / per_row))
    epochs = -(-n_qa // len(qa_rows))
    order = [i for b in batch_order(len(qa_rows), batch_size, epochs, seed) for i in b][:n_qa]
    first, second = [qa_rows[i] for i in order[: n_qa // 2]], [qa_rows[i] for i in order[n_qa // 2 :]]
    mixed = second + documents
    random.Random(seed).shuffle(mixed)
    return [rows[i : i + batch_size] for rows in (first, mixed) for i in range(0, len(rows), batch_size)]


def train_qa_first(
    model,
    tokenizer,
    examples: list[Example],
    documents: list[str],
    hp: Hyperparameters,
    budget_tokens: int,
    precision: Precision,
) -> dict[str, Any]:
    """A LoRA adapter (initialised as `ml.trainer.train_lora` initialises it, from the seed) trained on
    `qa_first_batches`; its figures as `run_arm` records them, with the document rows seen beside the QA rows."""
    import random

    import torch

    from ml.trainer import build_lora_model, tokenize_with_masks

    torch.manual_seed(hp.seed)
    random.seed(hp.seed)
    rows, _ = tokenize_with_masks(tokenizer, examples, hp.max_seq_length)
    texts = document_rows(tokenizer, documents, hp.max_seq_length) * DOCUMENT_PASSES
    batches = qa_first_batches(rows, texts, budget_tokens, hp.batch_size, hp.seed)
    steps, tokens, seconds = train_steps(build_lora_model(model, hp, None), batches, hp, precision)
    trained_rows = sum(len(b) for b in batches)
    return {
        "steps": steps,
        "examples_seen": trained_rows - len(texts),
        "document_rows_seen": len(texts),
        "document_tokens": sum(len(ids) for ids, _ in texts),
        "tokens": tokens,
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1),
        "examples_per_minute": round((trained_rows - len(texts)) / seconds * 60, 1),
    }


PRECISIONS: dict[str, tuple[Precision, Precision]] = {  # (training's, answering's)
    "fp32": ("fp32", "fp32"),
    "bf16": ("bf16", "bf16"),
    "bf16-train": ("bf16", "fp32"),
}


DEMO_CONTEXTS = f"{DEMO_RAG['retrieval_top_k']}x{DEMO_RAG['context_statements']}"


def arm_label(
    name: str, precision: str, lora_targets: str, contexts: str = DEMO_CONTEXTS, trainer: str = "lora"
) -> str:
    """The arm's name in the results: `arm`, `arm+full` (every weight trained), `arm+all_linear` (LoRA on every linear
    layer), `arm+5x2` (5 chunks retrieved, cut to 2 statements), `arm@bf16`, ... (results files written before
    session 22 name a fully trained arm as its LoRA twin, with `trainer: full` in each run)"""
    return (
        name
        + ("" if trainer == "lora" else f"+{trainer}")
        + ("" if lora_targets == "attention" else f"+{lora_targets}")
        + ("" if contexts == DEMO_CONTEXTS else f"+{contexts}")
        + ("" if precision == "fp32" else f"@{precision}")
    )


def budget_hyperparameters(
    tokenizer,
    train: list[Example],
    budget_tokens: int,
    seed: int,
    learning_rate: float | None = None,
    lora_targets: str = "attention",
) -> tuple[Hyperparameters, float]:
    """The demo's hyperparameters less its data levers (each arm applies its own), with the steps that spend
    `budget_tokens` on `train` (when it is above 0), and the mean tokens of a training row."""
    max_length = DEMO_RAG["max_seq_length"]
    demo = {**DEMO_HYPERPARAMETERS, "max_seq_length": max_length, "seed": seed, "balance_yes_no": False}
    hp = Hyperparameters(**cast(dict[str, Any], demo))
    hp.learning_rate = learning_rate or hp.learning_rate
    hp.lora_targets = lora_targets
    per_row = mean_row_tokens(tokenizer, train, max_length)
    if budget_tokens > 0:
        hp.max_steps = max(1, round(budget_tokens / (per_row * hp.batch_size)))
        hp.epochs = 100  # the budget ends training, not the epochs
    return hp, per_row


def run_arm(
    name: str,
    prepared: Prepared,
    budget_tokens: int,
    seed: int,
    settings: Settings,
    model_name: str = MODEL,
    trainer: str = "lora",
    learning_rate: float | None = None,
    precision: str = "fp32",
    lora_targets: str = "attention",
    closed_book: bool = False,
) -> dict:
    """One arm and seed: trained at the budget, then each held-out split asked with its passages (and, with
    `closed_book`, without them too, as `feedback_closed_book` and `test_closed_book`)."""
    from ml.base_model import load_model_and_tokenizer
    from ml.evaluator import generate_answers
    from ml.trainer import train_lora

    arm = ARMS[name](prepared)
    train_precision, answer_precision = PRECISIONS[precision]
    model, tokenizer = load_model_and_tokenizer(model_name, settings.model_cache_dir)
    hp, per_row = budget_hyperparameters(tokenizer, arm.splits.train, budget_tokens, seed, learning_rate, lora_targets)
    out: dict = {
        "arm": arm_label(name, precision, lora_targets, prepared.contexts, trainer),
        "contexts": prepared.contexts,
        "precision": precision,
        "lora_targets": lora_targets,
        "model": model_name,
        "trainer": trainer,
        "learning_rate": hp.learning_rate,
        "seed": seed,
        "train_rows": len(arm.splits.train),
        "mean_row_tokens": round(per_row, 1),
        "steps": 0,
        "examples_seen": 0,
        "tokens": 0,
    }
    if arm.documents and trainer != "lora":
        raise ValueError(f"{name} trains a LoRA adapter only, not with --trainer {trainer}")
    if budget_tokens > 0 and arm.documents:
        out |= train_qa_first(model, tokenizer, arm.splits.train, arm.documents, hp, budget_tokens, train_precision)
    elif budget_tokens > 0 and trainer == "full":
        steps, tokens, seconds = train_full(model, tokenizer, arm.splits.train, hp, train_precision)
        out |= {
            "steps": steps,
            "examples_seen": steps * hp.batch_size,
            "tokens": tokens,
            "train_seconds": round(seconds, 1),
            "tokens_per_second": round(tokens / seconds, 1),
            "examples_per_minute": round(steps * hp.batch_size / seconds * 60, 1),
        }
    elif budget_tokens > 0:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            summary = train_lora(
                model, tokenizer, arm.splits.train, hp, Path(folder) / "adapter", precision=train_precision
            )
        trained = time.perf_counter() - started
        out |= {
            "steps": summary.steps,
            "examples_seen": summary.steps * hp.batch_size,
            "tokens": summary.useful_tokens,
            "train_seconds": round(trained, 1),
            "tokens_per_second": summary.tokens_per_second,
            "examples_per_minute": round(summary.steps * hp.batch_size / trained * 60, 1),
        }
    started = time.perf_counter()
    for split in ("feedback", "test"):
        examples = getattr(arm.splits, split)
        with model_autocast(model, answer_precision):
            replies = generate_answers(
                model,
                tokenizer,
                [e.question for e in examples],
                max_new_tokens=arm.max_new_tokens,
                contexts=[e.context for e in examples],
            )
        out[split] = judged(examples, [arm.shown(r) for r in replies])
        if closed_book:
            with model_autocast(model, answer_precision):
                replies = generate_answers(
                    model, tokenizer, [e.question for e in examples], max_new_tokens=arm.max_new_tokens
                )
            out[f"{split}_closed_book"] = judged(examples, [arm.shown(r) for r in replies])
    out["answer_seconds"] = round(time.perf_counter() - started, 1)
    return out


def summary(runs: list[dict], baseline: str = "reference") -> dict:
    """Per arm, the mean right answers over its seeds on each split, and against `baseline` on the feedback split
    the questions gained and lost (pooled over the seeds both ran) with the exact McNemar p-value: the lever's
    decision. The test split's figures are reported beside it."""
    from facts.stats import mcnemar_exact

    by_arm: dict[str, dict[int, dict]] = {}
    for run in runs:
        by_arm.setdefault(run["arm"], {})[run["seed"]] = run
    reference_runs = by_arm.get(baseline, {})
    out = {}
    for arm, seeds in by_arm.items():
        row: dict = {"seeds": sorted(seeds)}
        for split in ("feedback", "test", "feedback_closed_book", "test_closed_book"):
            if not all(split in seeds[s] for s in seeds):
                continue
            rights = [seeds[s][split]["right"] for s in sorted(seeds)]
            row[split] = {
                "right": rights,
                "mean": round(statistics.fmean(rights), 2),
                "n": seeds[min(seeds)][split]["n"],
            }
            if arm != baseline:
                common = [s for s in seeds if split in reference_runs.get(s, {})]
                gained = sum(
                    len(set(seeds[s][split]["right_ids"]) - set(reference_runs[s][split]["right_ids"])) for s in common
                )
                lost = sum(
                    len(set(reference_runs[s][split]["right_ids"]) - set(seeds[s][split]["right_ids"])) for s in common
                )
                row[split]["against_reference"] = {
                    "seeds": sorted(common),
                    "gained": gained,
                    "lost": lost,
                    "mcnemar_p": round(mcnemar_exact(gained, lost), 4),
                }
        if all(seeds[s]["tokens"] for s in seeds):
            row["examples_per_1k_tokens"] = round(
                statistics.fmean(seeds[s]["examples_seen"] / seeds[s]["tokens"] * 1000 for s in seeds), 3
            )
        out[arm] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--budget-tokens", type=int, default=DEFAULT_BUDGET_TOKENS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[7])
    parser.add_argument("--out", default="training_levers")
    parser.add_argument(
        "--baseline",
        default="reference",
        help="the arm the others are compared with, as named in the results (`polarity_balanced@bf16-train`)",
    )
    parser.add_argument("--model", default=MODEL, choices=list(KNOWN_MODELS))
    parser.add_argument("--trainer", default="lora", choices=["lora", "full"])
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the demo's (LoRA's) 1e-3")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=list(PRECISIONS))
    parser.add_argument("--lora-targets", nargs="+", default=["attention"], choices=list(LORA_TARGET_CHOICES))
    parser.add_argument(
        "--contexts",
        nargs="+",
        default=[DEMO_CONTEXTS],
        help="KxS: K chunks retrieved per question, cut to S statements by the focused arms (the demo's: "
        f"{DEMO_CONTEXTS})",
    )
    parser.add_argument(
        "--baseline-runs",
        default=None,
        help="a results file whose runs of the baseline arm stand in for running it again (the runs reproduce seed "
        "for seed); they are copied into this file's runs, marked with where they came from",
    )
    parser.add_argument(
        "--closed-book", action="store_true", help="also ask every held-out question without its passages"
    )
    args = parser.parse_args()
    settings = Settings()
    prepared_by = {c: prepare(*(int(n) for n in c.split("x"))) for c in args.contexts}
    runs = []
    if args.baseline_runs:
        earlier = json.loads(Path(args.baseline_runs).read_text())["runs"]
        runs += [{**r, "from": Path(args.baseline_runs).name} for r in earlier if r["arm"] == args.baseline]
    for name in args.arms:
        for contexts, precision, targets, seed in itertools.product(
            args.contexts, args.precisions, args.lora_targets, args.seeds
        ):
            run = run_arm(
                name,
                prepared_by[contexts],
                args.budget_tokens,
                seed,
                settings,
                args.model,
                args.trainer,
                args.learning_rate,
                precision,
                targets,
                args.closed_book,
            )
            runs.append(run)
            print(
                f"{run['arm']} seed {seed}: feedback {run['feedback']['right']}/{run['feedback']['n']}, test "
                f"{run['test']['right']}/{run['test']['n']}, {run['steps']} steps, {run.get('train_seconds', 0)} s",
                flush=True,
            )
    write_result(
        args.out,
        {
            "model": args.model,
            "trainer": args.trainer,
            "learning_rate": args.learning_rate,
            "precisions": args.precisions,
            "lora_targets": args.lora_targets,
            "contexts": args.contexts,
            "budget_tokens": args.budget_tokens,
            "seeds": args.seeds,
            "baseline": args.baseline,
            "summary": summary(runs, args.baseline),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
