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


def focused(examples: list[Example], embed: Embedder, keep: int = 3) -> list[Example]:
    """Each example with its context cut to its `keep` statements nearest the question (unchanged without context)."""
    pieces = [[s for passage in e.context for s in statements(passage)] for e in examples]
    flat = [s for found in pieces for s in found]
    if not flat:
        return list(examples)
    vectors = embed(flat)
    questions = embed([e.question for e in examples])
    out, offset = [], 0
    for example, found, question in zip(examples, pieces, questions, strict=True):
        scores = vectors[offset : offset + len(found)] @ question
        offset += len(found)
        if not found:
            out.append(example)
            continue
        chosen = sorted(np.argsort(-scores)[:keep])
        out.append(dataclasses.replace(example, context=[found[i] for i in chosen]))
    return out
