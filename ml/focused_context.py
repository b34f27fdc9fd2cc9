"""Shorter contexts: the passages cut to the statements that matter for the question, ranked by the embedding model.

Each example's passages (the top-k chunks, or RAFT's mix for training) break into statements (`ml.generation`); the
`keep` statements most similar to the question, in the order of their passages, become the context. Training and
asking must cut the same way, so the model is asked as it was taught. The same minutes of training then see more
examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ml.examples import Example
from ml.generation import statements

Embedder = Callable[[list[str]], np.ndarray]


def focus_passages(
    questions: list[str],
    passages: list[list[str]],
    embed: Embedder,
    keep: int,
    question_vectors: np.ndarray | None = None,
) -> list[list[str]]:
    """For each question, its passages cut to the `keep` statements most similar to it, in the order of the passages
    (a question whose passages hold no statement keeps them as they are). `question_vectors`, when the caller has
    embedded the questions already (to retrieve the passages), saves embedding them again."""
    pieces = [[s for passage in found for s in statements(passage)] for found in passages]
    flat = [s for found in pieces for s in found]
    if not flat:
        return [list(found) for found in passages]
    vectors = embed(flat)
    if question_vectors is None:
        question_vectors = embed(questions)
    out, offset = [], 0
    for found, cut, question in zip(passages, pieces, question_vectors, strict=True):
        scores = vectors[offset : offset + len(cut)] @ question
        offset += len(cut)
        out.append([cut[i] for i in sorted(np.argsort(-scores)[:keep])] if cut else list(found))
    return out


def focused(examples: list[Example], embed: Embedder, keep: int = 3) -> list[Example]:
    """Each example with its context cut to its `keep` statements nearest the question (unchanged without context)."""
    cut = focus_passages([e.question for e in examples], [e.context for e in examples], embed, keep)
    return [dataclasses.replace(e, context=c) if e.context else e for e, c in zip(examples, cut, strict=True)]
