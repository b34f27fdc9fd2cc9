"""Question/answer pairs grounded in a knowledge base's chunks, and the validation every pair must pass.

Generators share one small interface: chunks in, candidate pairs out, each naming its chunk and its method.
- `LocalGenerator`, the offline default: each statement of a chunk (a list item, a line, a sentence) is an
  answer, and the local model writes the question it answers (few-shot prompt, greedy). Where the model's
  question fails validation, a cloze question made from the statement itself (its most specific span blanked
  out) is tried instead: a structural method that needs no model.
- `TeacherGenerator` (ml/teacher.py): any OpenAI-compatible chat-completions endpoint writes the pairs.

`validate` keeps a pair only if the answer is supported by its chunk, the question retrieves its own chunk in the
top k (round-trip consistency), the question is closer to its own answer than to the chunk's other statements,
it is not a near duplicate of another pair, and it is not a near copy of a held-out example; it counts the
rejections by reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from rapidfuzz import fuzz, process

from knowledge.grounding import SUPPORT_THRESHOLD, support
from knowledge.index import ChunkRecord, KnowledgeIndex
from ml.examples import Example, example_key, normalize_text
from ml.optimizer import NEAR_DUPLICATE_SIMILARITY, find_leaks

Embedder = Callable[[list[str]], np.ndarray]

# where a chunk's text breaks into statements: list items and lines, then sentences
STATEMENT_SPLIT = re.compile(r"\n+|(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
MIN_STATEMENT_WORDS, MAX_STATEMENT_WORDS = 5, 60


@dataclass(frozen=True)
class GeneratedPair:
    question: str
    answer: str
    chunk: ChunkRecord
    method: str  # local-model | cloze | teacher


class QuestionAnswerGenerator(Protocol):
    name: str

    def generate(self, chunks: list[ChunkRecord], per_chunk: int) -> list[GeneratedPair]:
        """Up to `per_chunk` candidate pairs for each chunk (validation comes after)."""
        ...


def statements(chunk_text: str) -> list[str]:
    """The chunk's self-contained statements: list items, lines and sentences of a useful length, markup removed."""
    out = []
    for piece in STATEMENT_SPLIT.split(chunk_text):
        text = normalize_text(LIST_MARK.sub("", piece).replace("**", "").replace("`", ""))
        # a heading or title line (no lower-case letter) states nothing
        if (
            MIN_STATEMENT_WORDS <= len(text.split()) <= MAX_STATEMENT_WORDS
            and not text.endswith(":")
            and any(c.islower() for c in text)
        ):
            out.append(text if text[-1] in ".!?" else text + ".")
    return out


# ---------------------------------------------------------------- structural: cloze questions

SPECIFIC = [
    re.compile(r"(?:/[\w.-]+)+/?"),  # a path
    re.compile(r"\b[A-Z]{2,}-\d+\b"),  # a code like FL-204
    re.compile(
        r"\$?\b\d(?:[\d.,:]*\d)?(?:\s*(?:%|GB|MB|MiB|TB|KB|ms|seconds?|minutes?|hours?|days?|weeks?|months?|years?|users?|devices?)\b|%)?"
    ),
    re.compile(r"\b[A-Z][\w.-]*(?:\s+[A-Z0-9][\w.-]*)+"),  # a multi-word name
]


def specific_span(statement: str) -> tuple[int, re.Match[str]] | None:
    """The statement's most specific span: the index of the first SPECIFIC pattern with a match that is not at the
    statement's start (a path, a code, a number with its unit, a name), and that match in the statement without its
    final punctuation."""
    body = statement.rstrip(".!?")
    for number, pattern in enumerate(SPECIFIC):
        match = next((m for m in pattern.finditer(body) if m.start() > 0 and m.group().strip()), None)
        if match:
            return number, match
    return None


def cloze_question(statement: str) -> str | None:
    """The statement with its most specific span blanked out."""
    found = specific_span(statement)
    if found is None:
        return None
    body, match = statement.rstrip(".!?"), found[1]
    return f"Fill in the blank: {body[: match.start()]}____{body[match.end() :]}."


# ---------------------------------------------------------------- the local model writes questions

QUESTION_SYSTEM = "Write one short question that the given fact answers. Reply with the question only."
FEW_SHOT = [  # generic, from no knowledge base, so no fact of any sample leaks into the prompt
    ("The library opens at 9:00 on weekdays and at 10:00 on Saturdays.", "When does the library open on Saturdays?"),
    (
        "Invoices are emailed to the billing contact on the first day of each month.",
        "Who receives the monthly invoices?",
    ),
    ("The pump must be serviced every 500 operating hours.", "How often must the pump be serviced?"),
]


class LocalGenerator:
    """The offline default: the local base model writes a question for each statement; cloze questions back it up."""

    name = "local"

    def __init__(self, model, tokenizer, batch_size: int = 32, max_new_tokens: int = 32):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def generate(self, chunks: list[ChunkRecord], per_chunk: int) -> list[GeneratedPair]:
        picked = [(chunk, s) for chunk in chunks for s in statements(chunk.text)[:per_chunk]]
        questions = self.write_questions([s for _, s in picked])
        pairs = []
        for (chunk, statement), question in zip(picked, questions, strict=True):
            if question:
                pairs.append(GeneratedPair(question, statement, chunk, "local-model"))
            cloze = cloze_question(statement)
            if cloze:
                # validation keeps the model's question first
                pairs.append(GeneratedPair(cloze, statement, chunk, "cloze"))
        return pairs

    def write_questions(self, facts: list[str]) -> list[str | None]:
        import torch

        device = next(self.model.parameters()).device
        self.model.eval()
        out: list[str | None] = []
        for start in range(0, len(facts), self.batch_size):
            prompts = [self._prompt(f) for f in facts[start : start + self.batch_size]]
            width = max(len(p) for p in prompts)
            ids = torch.full((len(prompts), width), self.tokenizer.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(prompts), width), dtype=torch.long)
            for row, prompt in enumerate(prompts):
                ids[row, width - len(prompt) :], attention[row, width - len(prompt) :] = torch.tensor(prompt), 1
            with torch.no_grad():
                generated = self.model.generate(
                    input_ids=ids.to(device),
                    attention_mask=attention.to(device),
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
            out.extend(
                clean_question(self.tokenizer.decode(seq[width:], skip_special_tokens=True)) for seq in generated
            )
        return out

    def _prompt(self, fact: str) -> list[int]:
        messages = [{"role": "system", "content": QUESTION_SYSTEM}]
        for example_fact, example_question in FEW_SHOT:
            messages += [{"role": "user", "content": example_fact}, {"role": "assistant", "content": example_question}]
        messages.append({"role": "user", "content": fact})
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids)


def clean_question(text: str) -> str | None:
    """The first line of a model's reply if it is one question of a sensible length, else None."""
    line = normalize_text(text.strip().splitlines()[0] if text.strip() else "")
    line = re.sub(r"^(?:question|q)\s*[:.-]\s*", "", line, flags=re.IGNORECASE)
    if "?" not in line:
        return None
    line = line[: line.index("?") + 1]
    return line if 3 <= len(line.split()) <= 30 else None


# ---------------------------------------------------------------- validation


@dataclass
class ValidationConfig:
    top_k: int = 3  # a question must retrieve its own chunk among this many
    support_threshold: float = SUPPORT_THRESHOLD
    near_duplicate_similarity: float = NEAR_DUPLICATE_SIMILARITY


@dataclass
class ValidatedPairs:
    examples: list[Example]
    candidates: int
    rejected: dict[str, int] = field(default_factory=dict)
    accepted_by_method: dict[str, int] = field(default_factory=dict)

    @property
    def yield_rate(self) -> float:
        return round(len(self.examples) / self.candidates, 4) if self.candidates else 0.0


def validate(
    pairs: list[GeneratedPair],
    index: KnowledgeIndex,
    embed: Embedder,
    held_out: list[Example] | None = None,
    existing: list[Example] | None = None,
    config: ValidationConfig = ValidationConfig(),
) -> ValidatedPairs:
    """The pairs that pass every check, as examples carrying their lineage (document, version, chunk); the rest counted
    by the first check they failed. Of several valid pairs for one statement, only the first (the model's) is kept."""
    rejected: Counter[str] = Counter()
    question_vectors = embed([p.question for p in pairs]) if pairs else np.zeros((0, 384), np.float32)
    hits = index.search(question_vectors, config.top_k) if pairs else []
    fits = _fits_its_statement(pairs, question_vectors, embed)
    seen_keys = [example_key(e.question, e.answer) for e in existing or []]
    answered: set[tuple[str, str]] = set()
    kept: list[Example] = []
    for pair, found, fit in zip(pairs, hits, fits, strict=True):
        if (pair.chunk.chunk_id, pair.answer) in answered:
            continue  # the statement already has a valid question (the backup is not needed)
        reason = _problem(pair, found, fit, seen_keys, config)
        if reason:
            rejected[reason] += 1
            continue
        example = Example(
            question=pair.question,
            answer=pair.answer,
            origin="generated",
            lineage=[
                {
                    "action": "generated",
                    "method": pair.method,
                    "document_id": pair.chunk.document_id,
                    "document_version": pair.chunk.document_version,
                    "chunk_id": pair.chunk.chunk_id,
                    "filename": pair.chunk.filename,
                }
            ],
        )
        seen_keys.append(example_key(example.question, example.answer))
        answered.add((pair.chunk.chunk_id, pair.answer))
        kept.append(example)
    if held_out and kept:
        leaked = {training_id for training_id, _, _ in find_leaks(kept, held_out)}
        rejected["near_held_out"] += len(leaked)
        kept = [e for e in kept if e.id not in leaked]
    methods = Counter(e.lineage[0]["method"] for e in kept)
    return ValidatedPairs(kept, len(pairs), dict(rejected), dict(methods))


def _fits_its_statement(pairs: list[GeneratedPair], question_vectors: np.ndarray, embed: Embedder) -> list[bool]:
    """Whether each question is closer to its own answer than to any other statement of its chunk (a question the
    model wrote about the wrong fact of a list still retrieves the list, so the round trip alone would pass it)."""
    out = []
    cache: dict[str, tuple[list[str], np.ndarray]] = {}
    for pair, vector in zip(pairs, question_vectors, strict=True):
        if pair.chunk.chunk_id not in cache:
            own = statements(pair.chunk.text)
            cache[pair.chunk.chunk_id] = (own, embed(own) if own else np.zeros((0, len(vector)), np.float32))
        own, vectors = cache[pair.chunk.chunk_id]
        others = [i for i, s in enumerate(own) if s != pair.answer]
        if pair.answer not in own or not others:
            # a teacher's answer in its own words, or a chunk of one statement: nothing to confuse it with
            out.append(True)
            continue
        similarity = vectors @ vector
        out.append(float(similarity[own.index(pair.answer)]) >= float(similarity[others].max()))
    return out


def _problem(pair: GeneratedPair, found, fits: bool, seen_keys: list[str], config: ValidationConfig) -> str | None:
    if support(pair.answer, pair.chunk.text) < config.support_threshold:
        return "unsupported_answer"
    if pair.chunk.chunk_id not in {h.chunk.chunk_id for h in found}:
        return "does_not_retrieve_its_chunk"
    if not fits:
        return "asks_about_another_statement"
    key = example_key(pair.question, pair.answer)
    if seen_keys and process.extractOne(
        key, seen_keys, scorer=fuzz.ratio, score_cutoff=config.near_duplicate_similarity
    ):
        return "near_duplicate"
    return None
