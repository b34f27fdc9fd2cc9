"""bench/statement_ranking and bench/yes_no_calibration: the statement a ranker chooses, and the calibrated yes/no
verdicts counted against the questions' checks."""

from __future__ import annotations

import numpy as np

from bench.statement_ranking import Candidates, bm25_over, bm25_over_candidates, cosine_ranker, lexical_ranker
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


STATEMENTS = [
    "The current stable release is FerroLink 4.2.1.",
    "FerroLink requires TLS 1.3 for every connection.",
    "The FerroLink web console is served over HTTPS on TCP port 7410.",
]


def test_bm25_ranks_the_statement_sharing_the_question_s_rare_term_first_and_stems_it():
    scores = bm25_over_candidates("Which TLS version is required?", STATEMENTS)
    assert int(np.argmax(scores)) == 1  # "TLS", and "required" stemmed to meet "requires"
    assert scores[2] == 0.0  # shares no term
    corpus = [*STATEMENTS, "FerroLink backs up nightly."]
    over_corpus = bm25_over(corpus)("Which TLS version is required?", STATEMENTS[::-1])  # in the order asked
    assert [bool(x > 0) for x in over_corpus] == [False, True, False]


def test_the_lexical_ranker_breaks_ties_by_the_cosine_and_fusion_joins_both_ranks():
    candidates = Candidates(example(), ["near", "near chunk", "far chunk"], chunk_similarity=[0.0, 0.0, 0.0])

    def tied(question: str, texts: list[str]) -> np.ndarray:
        return np.asarray([1.0, 1.0, 0.0])

    def far_first(question: str, texts: list[str]) -> np.ndarray:
        return np.asarray([0.0, 0.5, 1.0])

    assert lexical_ranker(tied, fuse=False, embedder=fake_embed)(candidates) == "near"
    assert lexical_ranker(far_first, fuse=False, embedder=fake_embed)(candidates) == "far chunk"
    # fused: "near chunk" is second by both, the others first by one and last by the other; rank 1 + rank 3 beats
    # rank 2 twice (1/61 + 1/63 > 2/62), and the cosine breaks the tie between the two extremes
    assert lexical_ranker(far_first, fuse=True, embedder=fake_embed)(candidates) == "near"


def test_a_calibrated_verdict_is_yes_when_the_difference_exceeds_the_prior():
    examples = [example("a", "yes"), example("b", "no"), example("c", "no")]
    # raw: all lean "yes"; the prior of 1.0 turns b and c to "no" and keeps a "yes"
    assert decisions_right(examples, [2.0, 0.5, 0.8], [0.0, 0.0, 0.0]) == 1
    assert decisions_right(examples, [2.0, 0.5, 0.8], [1.0, 1.0, 1.0]) == 3
