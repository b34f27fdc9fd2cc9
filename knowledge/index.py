"""A knowledge base's index: the chunk table, one embedding per chunk, and a FAISS index over them.

Vectors are L2-normalized, so inner product is cosine similarity. The index is exact (`IndexFlatIP`) while the
knowledge base is small and approximate (`IndexHNSWFlat`) from `APPROXIMATE_FROM` chunks on, where
`bench/kb_ingest` measured the flat index's search latency to outgrow the HNSW graph's with recall@10 still
above 0.95 (see `bench/results/kb_ingest.json`). The vectors are stored beside the index, so a new version is
built from the previous one without embedding again what did not change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from knowledge.embeddings import DIMENSIONS

APPROXIMATE_FROM = 20_000  # chunks; below this an exact search is fast enough (bench/kb_ingest)
HNSW_NEIGHBOURS = 32  # M: graph degree
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64

CHUNKS_FILE, VECTORS_FILE, INDEX_FILE, MANIFEST_FILE = "chunks.jsonl", "vectors.npy", "index.faiss", "manifest.json"


@dataclass
class ChunkRecord:
    """One row of the chunk table: a chunk, where it comes from, and where it is in its document's text."""

    chunk_id: str
    document_id: str
    document_version: int
    filename: str
    ordinal: int
    heading_path: list[str]
    text: str
    start: int
    end: int


def chunk_id(document_id: str, document_version: int, ordinal: int) -> str:
    """Deterministic, so rebuilding a version (a retried build) makes the same ids."""
    return hashlib.sha256(f"{document_id}:{document_version}:{ordinal}".encode()).hexdigest()[:20]


@dataclass
class SearchHit:
    chunk: ChunkRecord
    score: float  # cosine similarity
    rank: int  # 1 = best


class VectorIndex:
    """A FAISS index over row-ordered vectors: exact below `approximate_from` rows, HNSW from there on."""

    def __init__(self, index, kind: str):
        self.index = index
        self.kind = kind

    @classmethod
    def build(cls, vectors: np.ndarray, approximate_from: int = APPROXIMATE_FROM) -> VectorIndex:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, DIMENSIONS)
        if len(vectors) >= approximate_from:
            graph = faiss.IndexHNSWFlat(DIMENSIONS, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            graph.hnsw.efSearch = HNSW_EF_SEARCH
            index: faiss.Index = graph
            kind = "hnsw"
        else:
            index, kind = faiss.IndexFlatIP(DIMENSIONS), "flat"
        index.add(vectors)
        return cls(index, kind)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (queries, k); rows of -1 where fewer than k vectors exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, DIMENSIONS)
        return self.index.search(queries, k)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: str) -> VectorIndex:
        import faiss

        index = faiss.read_index(str(path))
        if kind == "hnsw":
            graph = faiss.downcast_index(index)
            if not isinstance(graph, faiss.IndexHNSWFlat):
                raise ValueError(f"{path} holds a {type(graph).__name__}, not the HNSW index its manifest names")
            graph.hnsw.efSearch = HNSW_EF_SEARCH
        return cls(index, kind)


@dataclass
class KnowledgeIndex:
    """One version of a knowledge base's index: row i of `vectors` is the embedding of `chunks[i]`."""

    chunks: list[ChunkRecord]
    vectors: np.ndarray
    index: VectorIndex

    @classmethod
    def build(
        cls, chunks: list[ChunkRecord], vectors: np.ndarray, approximate_from: int = APPROXIMATE_FROM
    ) -> KnowledgeIndex:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, DIMENSIONS)
        return cls(chunks, vectors, VectorIndex.build(vectors, approximate_from))

    def search(self, query_vectors: np.ndarray, top_k: int) -> list[list[SearchHit]]:
        """The `top_k` most similar chunks for each query vector, best first."""
        if not self.chunks:
            return [[] for _ in range(len(np.atleast_2d(query_vectors)))]
        scores, rows = self.index.search(query_vectors, min(top_k, len(self.chunks)))
        return [
            [
                SearchHit(self.chunks[row], round(float(score), 4), rank)
                for rank, (score, row) in enumerate(zip(s, r, strict=True), start=1)
                if row >= 0
            ]
            for s, r in zip(scores, rows, strict=True)
        ]

    @cached_property
    def chunk_counts(self) -> dict[str, int]:
        """document id -> how many chunks of it the index holds."""
        counts: dict[str, int] = {}
        for chunk in self.chunks:
            counts[chunk.document_id] = counts.get(chunk.document_id, 0) + 1
        return counts

    def by_document(self) -> dict[tuple[str, int], list[int]]:
        """(document id, version) -> the rows of its chunks."""
        rows: dict[tuple[str, int], list[int]] = {}
        for row, chunk in enumerate(self.chunks):
            rows.setdefault((chunk.document_id, chunk.document_version), []).append(row)
        return rows

    def document_text(self, document_id: str, version: int) -> str | None:
        """The text of one document version as its chunks hold it (their overlaps once; a gap between them, such as a
        heading, as a line break), or None when the index holds none of it."""
        chunks = sorted(
            (c for c in self.chunks if c.document_id == document_id and c.document_version == version),
            key=lambda c: (c.start, c.end),
        )
        parts: list[str] = []
        end = None
        for chunk in chunks:
            if end is None or chunk.start >= end:
                parts.append(("\n" if parts else "") + chunk.text)
            elif chunk.end > end:
                parts.append(chunk.text[end - chunk.start :])
            end = chunk.end if end is None else max(end, chunk.end)
        return "".join(parts) if chunks else None

    def without(self, document_id: str) -> KnowledgeIndex:
        """This index less every chunk of one document (its vectors too; the rest are not embedded again)."""
        keep = [row for row, chunk in enumerate(self.chunks) if chunk.document_id != document_id]
        return KnowledgeIndex.build([self.chunks[row] for row in keep], self.vectors[keep])

    def save(self, directory: Path) -> Path:
        """Write the chunk table, the vectors, the index and a manifest (written last: a folder without one is
        incomplete).
        """
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / CHUNKS_FILE, "w", encoding="utf-8") as fh:
            for chunk in self.chunks:
                fh.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
        np.save(directory / VECTORS_FILE, self.vectors)
        self.index.save(directory / INDEX_FILE)
        (directory / MANIFEST_FILE).write_text(
            json.dumps({"chunks": len(self.chunks), "index": self.index.kind, "dimensions": DIMENSIONS})
        )
        return directory

    @classmethod
    def load(cls, directory: Path) -> KnowledgeIndex:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        with open(directory / CHUNKS_FILE, encoding="utf-8") as fh:
            chunks = [ChunkRecord(**json.loads(line)) for line in fh if line.strip()]
        vectors = np.load(directory / VECTORS_FILE)
        return cls(chunks, vectors, VectorIndex.load(directory / INDEX_FILE, manifest["index"]))

    @classmethod
    def empty(cls) -> KnowledgeIndex:
        return cls.build([], np.zeros((0, DIMENSIONS), dtype=np.float32))
