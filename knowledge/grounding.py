"""Which chunk holds an answer: the supporting chunk of a question/answer pair, and whether a text is supported by a
chunk.

An answer is supported by a chunk when the chunk holds most of the answer's content words (numbers, names and
terms; not stop words). The supporting chunk of a pair is the best supported of the chunks most similar to the
question and answer together. For a held-out example this is used only to measure retrieval (recall@k, MRR),
never to build its prompt: retrieval for a prompt sees the question alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from knowledge.index import KnowledgeIndex, SearchHit

WORD = re.compile(r"[a-z0-9][a-z0-9._/%$:-]*[a-z0-9%]|[a-z0-9]")
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "you",
        "your",
        "yours",
        "we",
        "our",
        "they",
        "their",
        "he",
        "she",
        "his",
        "her",
        "i",
        "me",
        "my",
        "do",
        "does",
        "did",
        "done",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "not",
        "no",
        "yes",
        "so",
        "such",
        "also",
        "only",
        "just",
        "about",
        "into",
        "over",
        "under",
        "after",
        "before",
        "again",
        "all",
        "any",
        "each",
        "every",
        "more",
        "most",
        "other",
        "some",
        "same",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
    ]
)
SUPPORT_THRESHOLD = 0.6  # share of an answer's content words a chunk must hold to support it
CANDIDATES = 20  # chunks considered when looking for the one that supports an answer


def content_words(text: str) -> set[str]:
    return {w.strip(".:/-") for w in WORD.findall(text.lower()) if w not in STOP_WORDS} - {""}


def support(answer: str, chunk_text: str) -> float:
    """The share of the answer's content words that the chunk holds (1.0 for an answer with none)."""
    wanted = content_words(answer)
    return len(wanted & content_words(chunk_text)) / len(wanted) if wanted else 1.0


@dataclass(frozen=True)
class SupportingChunk:
    chunk_id: str
    support: float


def supporting_chunks(
    index: KnowledgeIndex, pairs: list[tuple[str, str]], query_vectors: np.ndarray, threshold: float = SUPPORT_THRESHOLD
) -> list[SupportingChunk | None]:
    """For each (question, answer), the chunk that best supports the answer among the `CANDIDATES` most similar to
    the pair (`query_vectors`: the embedded "question answer"), or None when none holds enough of it."""
    found: list[SupportingChunk | None] = []
    for (_, answer), hits in zip(pairs, index.search(query_vectors, CANDIDATES), strict=True):
        best = max(hits, key=lambda h: (support(answer, h.chunk.text), -h.rank), default=None)
        score = support(answer, best.chunk.text) if best else 0.0
        found.append(SupportingChunk(best.chunk.chunk_id, round(score, 3)) if best and score >= threshold else None)
    return found


def rank_of(hits: list[SearchHit], chunk_id: str) -> int | None:
    """1-based rank of the chunk among the hits, or None when it was not retrieved."""
    return next((h.rank for h in hits if h.chunk.chunk_id == chunk_id), None)
