"""Passages for each example's prompt, from a knowledge base: RAFT-style for training, plain retrieval for evaluation.

- A held-out example (feedback, test) is asked with the top-k chunks retrieved for its question alone, in rank
  order, exactly as the model will be asked when it serves. Its supporting chunk (knowledge.grounding, which
  looks at the answer) is recorded only to measure retrieval: recall@k and MRR.
- A training example gets k passages too, but as RAFT trains (Zhang et al., 2024, arXiv 2403.10131): in
  `oracle_fraction` of the examples the chunk that holds the answer is among them, in the others it is left
  out, the rest are the nearest other chunks (hard distractors), and the order is shuffled, so the answer's
  chunk is never always first. The adapter learns to answer from context and to ignore distractors.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from knowledge.grounding import SupportingChunk, rank_of, supporting_chunks
from knowledge.index import ChunkRecord, KnowledgeIndex, SearchHit
from ml.examples import Example
from schemas.reports import RetrievalQuality

Embedder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class ContextConfig:
    top_k: int = 3
    oracle_fraction: float = 0.8  # of training examples whose supporting chunk is known, the share that see it
    seed: int = 0


def retrieve(index: KnowledgeIndex, examples: list[Example], embed: Embedder, top_k: int) -> list[list[SearchHit]]:
    """The top-k chunks for each example's question (the question alone)."""
    return index.search(embed([e.question for e in examples]), top_k) if examples else []


def supports_of(index: KnowledgeIndex, examples: list[Example], embed: Embedder) -> list[SupportingChunk | None]:
    return (
        supporting_chunks(
            index, [(e.question, e.answer) for e in examples], embed([f"{e.question} {e.answer}" for e in examples])
        )
        if examples
        else []
    )


def held_out_contexts(
    index: KnowledgeIndex, examples: list[Example], embed: Embedder, config: ContextConfig
) -> tuple[list[Example], list[list[SearchHit]], list[SupportingChunk | None]]:
    """Each held-out example with the passages retrieved for its question, the hits, and its supporting chunk."""
    hits = retrieve(index, examples, embed, config.top_k)
    supports = supports_of(index, examples, embed)
    with_context = [
        dataclasses.replace(
            e,
            context=[h.chunk.text for h in found],
            context_chunk_ids=[h.chunk.chunk_id for h in found],
            supporting_chunk_id=s.chunk_id if s else None,
        )
        for e, found, s in zip(examples, hits, supports, strict=True)
    ]
    return with_context, hits, supports


def training_contexts(
    index: KnowledgeIndex, examples: list[Example], embed: Embedder, config: ContextConfig
) -> list[Example]:
    """Each training example with k passages: its supporting chunk in `oracle_fraction` of them, hard distractors,
    shuffled.
    """
    if not examples:
        return []
    by_id: dict[str, ChunkRecord] = {c.chunk_id: c for c in index.chunks}
    hits = retrieve(index, examples, embed, config.top_k + 1)
    out = []
    for example, found, support in zip(examples, hits, supports_of(index, examples, embed), strict=True):
        rng = random.Random(f"{config.seed}:{example.id}")
        oracle = by_id.get(support.chunk_id) if support else None
        distractors = [h.chunk for h in found if oracle is None or h.chunk.chunk_id != oracle.chunk_id]
        if oracle is not None and rng.random() < config.oracle_fraction:
            chosen = distractors[: config.top_k - 1] + [oracle]
        else:
            chosen = distractors[: config.top_k]
        rng.shuffle(chosen)
        out.append(
            dataclasses.replace(
                example,
                context=[c.text for c in chosen],
                context_chunk_ids=[c.chunk_id for c in chosen],
                supporting_chunk_id=oracle.chunk_id if oracle else None,
            )
        )
    return out


def retrieval_quality(
    split: str, hits: list[list[SearchHit]], supports: list[SupportingChunk | None], k: int
) -> RetrievalQuality:
    """recall@k and MRR over the examples whose supporting chunk is known."""
    ranks = [rank_of(found, s.chunk_id) for found, s in zip(hits, supports, strict=True) if s is not None]
    known = len(ranks)
    return RetrievalQuality(
        split=split,
        k=k,
        examples=len(hits),
        known=known,
        recall_at_k=round(sum(1 for r in ranks if r is not None and r <= k) / known, 4) if known else None,
        mrr=round(sum(1 / r for r in ranks if r is not None) / known, 4) if known else None,
    )
