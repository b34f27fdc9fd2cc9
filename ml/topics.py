"""Grouping bad cases into topics by the meaning of their questions."""

from __future__ import annotations

from knowledge.embeddings import embed


def group_by_topic(texts: list[str], threshold: float = 0.55) -> list[list[int]]:
    """Indices of `texts` grouped into topics (sentence-transformers community detection); every text is in one
    group.
    """
    if not texts:
        return []
    from sentence_transformers.util import community_detection

    vectors = embed(texts)
    groups = [list(g) for g in community_detection(vectors, threshold=threshold, min_community_size=1)]
    seen = {i for g in groups for i in g}
    groups.extend([i] for i in range(len(texts)) if i not in seen)
    return groups
