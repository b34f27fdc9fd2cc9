"""Data optimization: clean a raw dataset, split it for the whole task, and target training data at bad cases."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

from facts.derive import common_terms, derive_checks
from ml.examples import (
    Example,
    example_key,
    is_excluded,
    normalize_text,
    read_rows,
    record_checks,
    record_history,
    record_to_pair,
)
from schemas.checks import dump_checks
from schemas.reports import BadCase, Suggestion

# Two examples whose normalized text is at least this similar (rapidfuzz ratio, 0-100) are near duplicates.
NEAR_DUPLICATE_SIMILARITY = 90.0


@dataclass
class CleaningConfig:
    max_question_chars: int = 1000
    max_answer_chars: int = 1500
    near_duplicate_similarity: float = NEAR_DUPLICATE_SIMILARITY


@dataclass
class CleaningResult:
    examples: list[Example]
    rows_in: int
    removed: dict[str, list[dict[str, Any]]]  # reason -> [{line, detail}]
    derived_checks: int = 0  # kept rows whose fact checks were derived from their answers

    @property
    def removed_counts(self) -> dict[str, int]:
        return {reason: len(rows) for reason, rows in self.removed.items()}


def clean_dataset(path: Path, file_format: str, config: CleaningConfig | None = None) -> CleaningResult:
    """Parse, normalize and filter a raw dataset; every dropped row is reported with its line and reason."""
    config = config or CleaningConfig()
    removed: dict[str, list[dict[str, Any]]] = {}
    kept: list[Example] = []
    rows_in = 0

    def drop(reason: str, line: int, detail: str) -> None:
        removed.setdefault(reason, []).append({"line": line, "detail": detail})

    seen: dict[str, int] = {}
    for row in read_rows(path, file_format):
        rows_in += 1
        if row.error:
            drop("malformed", row.line, row.error)
            continue
        if is_excluded(row.record or {}):
            drop("excluded", row.line, "excluded by an annotation")
            continue
        try:
            question, answer = record_to_pair(row.record or {})
            checks = record_checks(row.record or {})
        except ValueError as exc:
            drop("malformed", row.line, str(exc))
            continue
        question, answer = normalize_text(question), normalize_text(answer)
        if not question or not answer:
            drop("empty", row.line, "empty question" if not question else "empty answer")
            continue
        if len(question) > config.max_question_chars or len(answer) > config.max_answer_chars:
            drop("too_long", row.line, f"question {len(question)} / answer {len(answer)} characters")
            continue
        key = example_key(question, answer)
        if key in seen:
            drop("exact_duplicate", row.line, f"same as line {seen[key]}")
            continue
        seen[key] = row.line
        history = record_history(row.record or {})
        kept.append(
            Example(question=question, answer=answer, source_line=row.line, checks=checks or [], history=history)
        )

    kept, near = remove_near_duplicates(kept, config.near_duplicate_similarity)
    derived = with_derived_checks(kept)
    for example, original in near:
        removed.setdefault("near_duplicate", []).append(
            {"line": example.source_line, "detail": f"near line {original.source_line}"}
        )
    return CleaningResult(examples=kept, rows_in=rows_in, removed=removed, derived_checks=derived)


def with_derived_checks(examples: list[Example]) -> int:
    """Give every example without fact checks the checks derived from its answer (marked derived); returns how many."""
    common = common_terms([e.answer for e in examples])
    bare = [e for e in examples if not e.checks]
    for example in bare:
        example.checks = dump_checks(derive_checks(example.question, example.answer, common))
    return len(bare)


def remove_near_duplicates(
    examples: list[Example], similarity: float
) -> tuple[list[Example], list[tuple[Example, Example]]]:
    """Keep the first of every group of near-duplicate examples; return (kept, [(dropped, kept_twin)])."""
    if len(examples) < 2:
        return examples, []
    keys = [example_key(e.question, e.answer) for e in examples]
    scores = process.cdist(keys, keys, scorer=fuzz.ratio, score_cutoff=similarity, workers=-1)
    kept: list[Example] = []
    dropped: list[tuple[Example, Example]] = []
    kept_index: list[int] = []
    for i, example in enumerate(examples):
        twins = [j for j in kept_index if scores[i, j] >= similarity]
        if twins:
            dropped.append((example, examples[twins[0]]))
        else:
            kept.append(example)
            kept_index.append(i)
    return kept, dropped


# ---------------------------------------------------------------- splits


@dataclass
class SplitConfig:
    feedback_fraction: float = 0.15
    test_fraction: float = 0.15
    min_examples: int = 4


@dataclass
class Splits:
    """train: what the model learns from; feedback: where the loop mines bad cases; test: locked, only reported."""

    train: list[Example]
    feedback: list[Example]
    test: list[Example]

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {name: [e.to_json() for e in getattr(self, name)] for name in ("train", "feedback", "test")}

    @classmethod
    def from_json(cls, data: dict[str, list[dict[str, Any]]]) -> Splits:
        return cls(**{name: [Example.from_json(e) for e in data[name]] for name in ("train", "feedback", "test")})

    def held_out(self) -> list[Example]:
        return self.feedback + self.test


@dataclass
class FollowedSplits:
    splits: Splits
    dropped: int  # examples whose row the version excludes
    corrected: int  # examples whose row the version answers or checks otherwise


def follow_dataset(splits: Splits, records: list[dict[str, Any]]) -> FollowedSplits:
    """The splits brought to a newer version of their dataset (`records`): an example whose row it excludes (an
    annotation, such as a stale row) leaves its split, and one whose row it corrected takes the new answer and checks,
    in the same split, under its id. A row is found by its question and answer, else by its question alone when only
    one row asks it; an example with no row (generated, or a row since removed) stays as it is."""
    by_pair: dict[str, dict[str, Any]] = {}
    by_question: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        try:
            question, answer = record_to_pair(record)
        except ValueError:
            continue
        by_pair.setdefault(example_key(question, answer), record)
        by_question.setdefault(normalize_text(question).casefold(), []).append(record)
    dropped = corrected = 0

    def follow(examples: list[Example]) -> list[Example]:
        nonlocal dropped, corrected
        kept = []
        for example in examples:
            record = by_pair.get(example_key(example.question, example.answer))
            if record is None:
                asking = by_question.get(normalize_text(example.question).casefold(), [])
                record = asking[0] if len(asking) == 1 else None
            if record is None:
                kept.append(example)
                continue
            if is_excluded(record):
                dropped += 1
                continue
            answer = normalize_text(record_to_pair(record)[1])
            try:
                checks = record_checks(record)
            except ValueError:
                checks = None
            if answer != example.answer or (checks is not None and checks != example.checks):
                corrected += 1
                checks = checks or dump_checks(derive_checks(example.question, answer))
                example = replace(example, answer=answer, checks=checks)  # the same example, answered right now
            kept.append(example)
        return kept

    followed = Splits(follow(splits.train), follow(splits.feedback), follow(splits.test))
    return FollowedSplits(followed, dropped, corrected)


def _split_rank(example: Example) -> str:
    return hashlib.sha256(("split:" + example_key(example.question, example.answer)).encode()).hexdigest()


def question_groups(examples: list[Example], similarity: float = NEAR_DUPLICATE_SIMILARITY) -> list[list[int]]:
    """Indices grouped so that examples with near-identical questions share a group (union-find)."""
    parent = list(range(len(examples)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if len(examples) > 1:
        questions = [normalize_text(e.question).casefold() for e in examples]
        scores = process.cdist(questions, questions, scorer=fuzz.ratio, score_cutoff=similarity, workers=-1)
        for i, j in zip(*np.nonzero(scores), strict=True):
            parent[root(int(i))] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(examples)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def split_examples(examples: list[Example], config: SplitConfig | None = None) -> Splits:
    """Stable three-way split by hash of the normalized examples; small datasets still get `min_examples` per held-out
    split.

    Examples whose questions are near-identical move together, so no held-out question has a twin in training.
    """
    config = config or SplitConfig()
    n = len(examples)
    n_test = max(config.min_examples, round(n * config.test_fraction))
    n_feedback = max(config.min_examples, round(n * config.feedback_fraction))
    if n - n_test - n_feedback < config.min_examples:
        raise ValueError(
            f"only {n} usable examples after cleaning; need at least {n_test + n_feedback + config.min_examples} "
            f"for train/feedback/test splits"
        )
    groups = sorted(question_groups(examples), key=lambda g: min(_split_rank(examples[i]) for i in g))
    parts: dict[str, list[int]] = {"test": [], "feedback": [], "train": []}
    targets = {"test": n_test, "feedback": n_feedback}
    for group in groups:
        # a group that would overshoot a held-out split's target by more than half goes to train instead
        name = next(
            (
                s
                for s in ("test", "feedback")
                if len(parts[s]) < targets[s] and len(parts[s]) + len(group) <= targets[s] * 1.5
            ),
            "train",
        )
        parts[name].extend(group)
    short = [name for name in ("train", "feedback", "test") if len(parts[name]) < config.min_examples]
    if short:
        raise ValueError(
            f"cannot split {n} examples: the {', '.join(short)} split would have fewer than {config.min_examples} "
            f"examples "
            f"(too many near-identical questions: {len(groups)} distinct question groups)"
        )
    # keep the file's order inside each split
    return Splits(*([examples[i] for i in sorted(parts[name])] for name in ("train", "feedback", "test")))


CORRECTION_WEIGHT = 2  # a corrected answer is trained on twice: a user asked for it to change


@dataclass
class Corrections:
    examples: list[Example]  # to train on, each with CORRECTION_WEIGHT
    near_held_out: list[Example]  # left out: their questions copy a held-out one


def corrections_for_training(
    corrections: Sequence[Example], held_out: Sequence[Example], source: dict[str, Any]
) -> Corrections:
    """A feedback round's corrected answers as training examples: weighted, their lineage naming `source` (the
    dataset and version), less those that copy a held-out example (the locked test split stays unseen; the feedback
    split too, or the loop would score on what it trained on)."""
    leaked = {training_id for training_id, _, _ in find_leaks(corrections, held_out)}
    kept = [
        replace(
            example,
            weight=CORRECTION_WEIGHT,
            origin="correction",
            lineage=[*example.lineage, {"action": "corrected_answer", **source}],
        )
        for example in corrections
        if example.id not in leaked
    ]
    return Corrections(kept, [example for example in corrections if example.id in leaked])


def within_budget(
    priority: Sequence[Example], rest: Sequence[Example], budget_rows: int | None, seed: int
) -> tuple[list[Example], dict[str, Any]]:
    """A training set that an iteration reaching only `budget_rows` rows (its `max_steps` batches) trains on whole:
    every `priority` example (each counted `weight` times), and of `rest` a seeded sample that fills the room left
    (replay: what keeps the rest of what the model knew). Everything when it fits, or with no budget."""
    needed, available = sum(e.copies for e in priority), sum(e.copies for e in rest)
    if budget_rows is None or needed + available <= budget_rows:
        return [*rest, *priority], {"budget_rows": budget_rows, "replayed": len(rest), "of": len(rest)}
    room = max(0, budget_rows - needed)
    order = list(range(len(rest)))
    random.Random(seed).shuffle(order)
    kept: set[int] = set()
    used = 0
    for i in order:
        if used + rest[i].copies <= room:
            kept.add(i)
            used += rest[i].copies
    replayed = [e for i, e in enumerate(rest) if i in kept]  # in their order
    return [*replayed, *priority], {"budget_rows": budget_rows, "replayed": len(replayed), "of": len(rest)}


def find_leaks(
    training: Sequence[Example], held_out: Sequence[Example], similarity: float = NEAR_DUPLICATE_SIMILARITY
) -> list[tuple[str, str, float]]:
    """Every (training id, held-out id, similarity) pair where a training example copies or nearly copies a held-out
    one.

    Both the whole example and the question alone are compared, so a rewrite that keeps a held-out
    question under a new answer is caught too.
    """
    if not training or not held_out:
        return []
    leaks = []
    for text in (lambda e: example_key(e.question, e.answer), lambda e: normalize_text(e.question).casefold()):
        scores = process.cdist(
            [text(e) for e in training],
            [text(e) for e in held_out],
            scorer=fuzz.ratio,
            score_cutoff=similarity,
            workers=-1,
        )
        for i, j in zip(*np.nonzero(scores), strict=True):
            leaks.append((training[i].id, held_out[j].id, float(scores[i, j])))
    return leaks


# ---------------------------------------------------------------- targeting bad cases

Embedder = Callable[[list[str]], np.ndarray]  # texts -> L2-normalized row vectors

REWRITE_TEMPLATES = (
    "{q} Answer in one sentence.",
    "Quick question: {q}",
    "I need the short answer: {q}",
)


@dataclass
class TargetingConfig:
    neighbours_per_bad_case: int = 3
    upweight: int = 1  # extra copies per targeted example
    rewrites_per_example: int = 1
    min_similarity: float = 0.3


@dataclass
class OptimizationLog:
    rows_in: int
    removed: dict[str, int]
    removed_rows: dict[str, list[dict[str, Any]]]
    splits: dict[str, int]
    upweighted: int = 0
    added: int = 0
    rewrites_rejected: dict[str, int] = field(default_factory=dict)
    targeted_bad_cases: int = 0
    rows_out: int = 0
    knowledge_base_version: int | None = None  # with a knowledge base: the index version the passages came from
    retrieval: dict[str, Any] | None = None  # and how well held-out questions retrieved their answers' chunks
    grounded: dict[str, Any] | None = None  # grounded targeting: chunks, candidates, added, rejections
    derived_checks: int = 0  # rows whose fact checks were derived from their answers (the rest carried their own)
    changed_facts: dict[str, Any] | None = None  # a knowledge update's re-training: examples from the new statements
    corrections: dict[str, Any] | None = None  # a feedback round: the corrected answers trained on, and those left out
    # a round with examples it must teach (changed facts, corrections) fitted to its steps: the rest it replayed
    replay: dict[str, Any] | None = None


@dataclass
class TargetedData:
    train: list[Example]
    upweighted: int
    added: int
    rejected: dict[str, int]
    targeted_bad_cases: int


def target_bad_cases(
    train: list[Example],
    held_out: list[Example],
    bad_cases: list[BadCase],
    suggestions: list[Suggestion],
    embed: Embedder,
    config: TargetingConfig | None = None,
) -> TargetedData:
    """Up-weight the training examples nearest to each bad case and add validated rewrites of them.

    Bad cases from the feedback split are only ever used as *queries*: what enters the training set
    is training material (or a rewrite of it) and every rewrite is checked against the held-out
    splits. Every touched example records the bad case and suggestion that caused it.
    """
    config = config or TargetingConfig()
    result = [Example(**{**e.to_json(), "lineage": list(e.lineage)}) for e in train]
    if not bad_cases or not result:
        return TargetedData(result, 0, 0, {}, 0)
    suggestion_of = {case_id: s.id for s in suggestions for case_id in s.evidence_bad_case_ids}
    by_id = {e.id: i for i, e in enumerate(result)}
    train_vectors = embed([e.question for e in result])
    targets: dict[int, list[dict[str, Any]]] = {}
    for case in bad_cases:
        cause = {
            "bad_case_id": case.example_id,
            "suggestion_id": suggestion_of.get(case.example_id),
            "split": case.split,
        }
        if case.split == "train" and case.example_id in by_id:
            targets.setdefault(by_id[case.example_id], []).append({**cause, "reason": "high_training_loss"})
            continue
        query = embed([case.question])[0]
        similarities = train_vectors @ query
        for index in np.argsort(-similarities)[: config.neighbours_per_bad_case]:
            if similarities[index] >= config.min_similarity:
                targets.setdefault(int(index), []).append(
                    {**cause, "reason": "nearest_to_failure", "similarity": round(float(similarities[index]), 3)}
                )

    held_questions = [normalize_text(e.question).casefold() for e in held_out]
    existing = {example_key(e.question, e.answer) for e in result}
    rejected: Counter[str] = Counter()
    added: list[Example] = []
    for index, causes in sorted(targets.items()):
        example = result[index]
        example.weight += config.upweight
        example.lineage.extend({**c, "action": "upweight"} for c in causes)
        for template in REWRITE_TEMPLATES[: config.rewrites_per_example]:
            rewrite = Example(
                question=template.format(q=example.question),
                answer=example.answer,
                origin="rewrite",
                lineage=[{**c, "action": "rewrite", "rewrite_of": example.id} for c in causes],
            )
            reason = _rewrite_problem(rewrite, example, held_questions, existing)
            if reason:
                rejected[reason] += 1
                continue
            existing.add(example_key(rewrite.question, rewrite.answer))
            added.append(rewrite)
    if added and find_leaks(added, held_out):
        leaked = {t for t, _, _ in find_leaks(added, held_out)}
        rejected["near_held_out"] += len(leaked)
        added = [e for e in added if e.id not in leaked]
    return TargetedData(
        result + added,
        len(targets),
        len(added),
        dict(rejected),
        len({c["bad_case_id"] for cs in targets.values() for c in cs}),
    )


def _rewrite_problem(rewrite: Example, original: Example, held_questions: list[str], existing: set[str]) -> str | None:
    """Why a rewrite must not be added, or None if it is valid."""
    if rewrite.answer != original.answer or not rewrite.question.strip():
        return "changed_answer"
    if example_key(rewrite.question, rewrite.answer) in existing:
        return "duplicate"
    question = normalize_text(rewrite.question).casefold()
    if held_questions and process.extractOne(
        question, held_questions, scorer=fuzz.ratio, score_cutoff=NEAR_DUPLICATE_SIMILARITY
    ):
        return "near_held_out"
    return None


def expand_weights(examples: list[Example]) -> list[Example]:
    """The training stream: each example repeated `weight` times."""
    return [e for e in examples for _ in range(e.copies)]
