"""Grounded targeting: each feedback bad case retrieves the chunks that concern it, and new examples are generated from
those chunks and validated, never from the held-out question itself (nor a rewrite of it).

Every generated example records which bad cases led to it and from which chunk it came, so the next evaluation can
follow bad case -> chunks -> generated examples -> adapter -> score change. The ablation's control,
`random_chunk_examples`, generates the same number of validated examples from chunks drawn at random.

`changed_fact_examples` serves a knowledge update: the statements a newer index version holds and the one a task
grounded on did not (a changed value, a new document) become validated examples, so the re-training learns the new
facts from their passages instead of only forgetting the rows they made stale.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from knowledge.index import ChunkRecord, KnowledgeIndex
from ml.examples import Example
from ml.generation import Embedder, QuestionAnswerGenerator, ValidationConfig, statements, validate
from schemas.reports import BadCase, Suggestion


@dataclass(frozen=True)
class GroundedConfig:
    chunks_per_bad_case: int = 2  # the chunks a bad case's question retrieves, to generate from
    questions_per_chunk: int = 3
    max_changed_statements: int = 200  # a knowledge update generates from at most this many new statements
    validation: ValidationConfig = field(default_factory=ValidationConfig)


@dataclass
class GroundedData:
    examples: list[Example]
    chunks: int  # distinct chunks generated from
    candidates: int
    rejected: dict[str, int]
    targeted_bad_cases: int

    def log(self) -> dict[str, Any]:
        return {
            "grounded_chunks": self.chunks,
            "grounded_candidates": self.candidates,
            "grounded_added": len(self.examples),
            "grounded_rejected": self.rejected,
            "grounded_bad_cases": self.targeted_bad_cases,
        }


def grounded_examples(
    bad_cases: list[BadCase],
    suggestions: list[Suggestion],
    index: KnowledgeIndex,
    embed: Embedder,
    generator: QuestionAnswerGenerator,
    held_out: list[Example],
    existing: list[Example],
    config: GroundedConfig = GroundedConfig(),
) -> GroundedData:
    """Validated examples generated from the chunks the feedback bad cases retrieve, each with its causes."""
    cases = [c for c in bad_cases if c.split == "feedback"]
    if not cases or not index.chunks:
        return GroundedData([], 0, 0, {}, 0)
    suggestion_of = {case_id: s.id for s in suggestions for case_id in s.evidence_bad_case_ids}
    causes: dict[str, list[dict[str, Any]]] = {}  # chunk id -> the bad cases that retrieved it
    chunks: dict[str, ChunkRecord] = {}
    for case, hits in zip(
        cases, index.search(embed([c.question for c in cases]), config.chunks_per_bad_case), strict=True
    ):
        for hit in hits:
            chunks[hit.chunk.chunk_id] = hit.chunk
            causes.setdefault(hit.chunk.chunk_id, []).append(
                {
                    "bad_case_id": case.example_id,
                    "suggestion_id": suggestion_of.get(case.example_id),
                    "split": "feedback",
                    "reason": "retrieved_chunk",
                    "similarity": hit.score,
                }
            )
    result = _generate(list(chunks.values()), index, embed, generator, held_out, existing, config)
    for example in result.examples:
        source = example.lineage[0]
        example.lineage = [
            {**cause, **source, "action": "generated_from_chunk"} for cause in causes[source["chunk_id"]]
        ]
    targeted = len({c["bad_case_id"] for e in result.examples for c in e.lineage})
    return GroundedData(result.examples, len(chunks), result.candidates, result.rejected, targeted)


def random_chunk_examples(
    count: int,
    index: KnowledgeIndex,
    embed: Embedder,
    generator: QuestionAnswerGenerator,
    held_out: list[Example],
    existing: list[Example],
    seed: int,
    config: GroundedConfig = GroundedConfig(),
) -> GroundedData:
    """The control: `count` validated examples generated from chunks drawn at random (no bad case involved)."""
    if count <= 0 or not index.chunks:
        return GroundedData([], 0, 0, {}, 0)
    order = list(index.chunks)
    random.Random(seed).shuffle(order)
    examples: list[Example] = []
    rejected: Counter[str] = Counter()
    used = candidates = 0
    step = max(1, count // config.questions_per_chunk)
    while len(examples) < count and used < len(order):  # draw more chunks until enough examples pass validation
        batch = order[used : used + step]
        used += len(batch)
        result = _generate(batch, index, embed, generator, held_out, existing + examples, config)
        examples += result.examples[: count - len(examples)]
        candidates += result.candidates
        rejected.update(result.rejected)
    for example in examples:
        example.lineage = [{**example.lineage[0], "action": "generated_from_random_chunk"}]
    return GroundedData(examples, used, candidates, dict(rejected), 0)


def changed_statements(previous: KnowledgeIndex, current: KnowledgeIndex) -> list[ChunkRecord]:
    """The current version's chunks cut to the statements that no chunk of the previous version held (a changed value,
    a new paragraph, a new document), in index order; chunks with no new statement are left out."""
    before = {s for chunk in previous.chunks for s in statements(chunk.text)}
    changed = []
    for chunk in current.chunks:
        new = [s for s in statements(chunk.text) if s not in before]
        if new:
            changed.append(dataclasses.replace(chunk, text="\n".join(new)))
    return changed


def changed_fact_examples(
    previous: KnowledgeIndex,
    current: KnowledgeIndex,
    embed: Embedder,
    generator: QuestionAnswerGenerator,
    held_out: list[Example],
    existing: list[Example],
    config: GroundedConfig = GroundedConfig(),
) -> GroundedData:
    """Validated examples about the statements `current` holds and `previous` did not, each answered by its new
    statement and validated against its whole chunk (so a question about another fact of the chunk is refused)."""
    cut, total = [], 0
    for chunk in changed_statements(previous, current):
        if total >= config.max_changed_statements:
            break
        kept = statements(chunk.text)[: config.max_changed_statements - total]
        cut.append(dataclasses.replace(chunk, text="\n".join(kept)))
        total += len(kept)
    if not cut:
        return GroundedData([], 0, 0, {}, 0)
    whole = {c.chunk_id: c for c in current.chunks}
    pairs = [
        dataclasses.replace(pair, chunk=whole[pair.chunk.chunk_id])
        for pair in generator.generate(cut, max(len(statements(c.text)) for c in cut))
    ]
    result = validate(pairs, current, embed, held_out=held_out, existing=existing, config=config.validation)
    for example in result.examples:
        example.lineage = [{**example.lineage[0], "action": "generated_from_changed_chunk"}]
    return GroundedData(result.examples, len(cut), result.candidates, result.rejected, 0)


def _generate(
    chunks: list[ChunkRecord],
    index: KnowledgeIndex,
    embed: Embedder,
    generator: QuestionAnswerGenerator,
    held_out: list[Example],
    existing: list[Example],
    config: GroundedConfig,
):
    pairs = generator.generate(chunks, config.questions_per_chunk)
    return validate(pairs, index, embed, held_out=held_out, existing=existing, config=config.validation)
