"""Building a new index version from the documents a knowledge base holds now, reusing the previous version.

A document whose id and version are already indexed keeps its chunks and vectors; a new or changed document is
parsed, chunked and embedded; a document no longer listed simply leaves. So the result depends only on the
documents and the previous version, never on how many times a build ran: a retried build makes the same chunks
with the same ids, and no chunk is ever indexed twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from knowledge.chunking import ChunkingConfig, TokenCounter, chunk_document, embedding_text
from knowledge.documents import DocumentError, parse_document
from knowledge.embeddings import DIMENSIONS
from knowledge.index import APPROXIMATE_FROM, ChunkRecord, KnowledgeIndex, chunk_id

EMBED_BATCH = 256  # chunks per call to the embedder: large batches, across documents, keep the model busy

Embedder = Callable[[list[str]], np.ndarray]
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class SourceDocument:
    document_id: str
    version: int
    filename: str
    media_type: str


@dataclass
class DocumentOutcome:
    document_id: str
    version: int
    status: str  # INDEXED | FAILED
    chunk_count: int = 0
    error: str | None = None
    embedded: bool = False  # False: its chunks came from the previous version unchanged


@dataclass
class BuildOutcome:
    index: KnowledgeIndex
    documents: list[DocumentOutcome]
    embedded_chunks: int
    seconds: dict[str, float] = field(default_factory=dict)  # parse+chunk, embed, index


def build_index(
    documents: list[SourceDocument],
    previous: KnowledgeIndex | None,
    read: Callable[[SourceDocument], bytes],
    embed: Embedder,
    count_tokens: TokenCounter,
    config: ChunkingConfig = ChunkingConfig(),
    progress: Progress | None = None,
    approximate_from: int = APPROXIMATE_FROM,
) -> BuildOutcome:
    """The index of exactly `documents`; an unreadable or empty document is FAILED with the reason, the rest are
    indexed.
    """
    import time

    clock = {"parse_and_chunk": 0.0, "embed": 0.0, "index": 0.0}
    reusable = previous.by_document() if previous is not None else {}
    parts: list[tuple[list[ChunkRecord], np.ndarray | None]] = []  # per indexed document; None: still to embed
    outcomes: list[DocumentOutcome] = []
    for done, document in enumerate(documents, start=1):
        key = (document.document_id, document.version)
        if previous is not None and key in reusable:
            rows = reusable[key]
            parts.append(([previous.chunks[r] for r in rows], previous.vectors[rows]))
            outcomes.append(DocumentOutcome(document.document_id, document.version, "INDEXED", len(rows)))
        else:
            started = time.perf_counter()
            try:
                parsed = parse_document(read(document), document.media_type)
                pieces = chunk_document(parsed, count_tokens, config)
            except DocumentError as exc:
                outcomes.append(DocumentOutcome(document.document_id, document.version, "FAILED", error=str(exc)))
                continue
            finally:
                clock["parse_and_chunk"] += time.perf_counter() - started
            records = [
                ChunkRecord(
                    chunk_id(document.document_id, document.version, p.ordinal),
                    document.document_id,
                    document.version,
                    document.filename,
                    p.ordinal,
                    p.heading_path,
                    p.text,
                    p.start,
                    p.end,
                )
                for p in pieces
            ]
            parts.append((records, None))
            outcomes.append(
                DocumentOutcome(document.document_id, document.version, "INDEXED", len(records), embedded=True)
            )
        if progress:
            progress("parse", done, len(documents))

    pending = [chunk for records, vectors in parts if vectors is None for chunk in records]
    started = time.perf_counter()
    fresh = _embed_in_batches([embedding_text(c.heading_path, c.text) for c in pending], embed, progress)
    clock["embed"] = time.perf_counter() - started
    chunks, vectors, offset = [], [], 0
    for records, stored in parts:
        chunks.extend(records)
        if stored is None:
            stored, offset = fresh[offset : offset + len(records)], offset + len(records)
        vectors.append(stored)
    started = time.perf_counter()
    index = KnowledgeIndex.build(
        chunks, np.concatenate(vectors) if vectors else np.zeros((0, DIMENSIONS), np.float32), approximate_from
    )
    clock["index"] = time.perf_counter() - started
    return BuildOutcome(index, outcomes, len(pending), {k: round(v, 3) for k, v in clock.items()})


def _embed_in_batches(texts: list[str], embed: Embedder, progress: Progress | None) -> np.ndarray:
    out = []
    for start in range(0, len(texts), EMBED_BATCH):
        out.append(embed(texts[start : start + EMBED_BATCH]))
        if progress:
            progress("embed", min(start + EMBED_BATCH, len(texts)), len(texts))
    return np.concatenate(out) if out else np.zeros((0, DIMENSIONS), np.float32)
