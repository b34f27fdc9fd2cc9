"""bench/statement_ranking and bench/yes_no_calibration: the statement a ranker chooses, and the calibrated yes/no
verdicts counted against the questions' checks."""

from __future__ import annotations

import numpy as np

from bench.statement_ranking import Candidates, cosine_ranker
from bench.yes_no_calibration import decisions_right
from ml.examples import Example

VECTORS = {"q": [1.0, 0.0], "near": [0.9, 0.1], "far chunk": [0.6, 0.8], "near chunk": [0.7, 0.7]}


def fake_embed(texts: list[str]) -> np.ndarray:
    rows = np.asarray([VECTORS[t] for t in texts], dtype=float)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def example(question: str = "q", polarity: str | None = None) -> Example:
    checks = [{"type": "polarity", "value": polarity}] if polarity else []
    return Example(id=question, question=question, answer="", checks=checks)


def test_the_cosine_ranker_takes_the_nearest_statement_and_the_chunk_weight_can_overturn_it():
    candidates = Candidates(example(), ["near", "near chunk"], chunk_similarity=[0.1, 0.9])
    assert cosine_ranker(fake_embed)(candidates) == "near"
    assert cosine_ranker(fake_embed, chunk_weight=1.0)(candidates) == "near chunk"


def test_a_calibrated_verdict_is_yes_when_the_difference_exceeds_the_prior():
    examples = [example("a", "yes"), example("b", "no"), example("c", "no")]
    # raw: all lean "yes"; the prior of 1.0 turns b and c to "no" and keeps a "yes"
    assert decisions_right(examples, [2.0, 0.5, 0.8], [0.0, 0.0, 0.0]) == 1
    assert decisions_right(examples, [2.0, 0.5, 0.8], [1.0, 1.0, 1.0]) == 3
