"""Knowledge-base ingestion and search at scale, on a generated corpus (markdown manuals of made-up products).

1. Throughput: the whole ingestion (parse, chunk, embed, index) in chunks/s, as a ratio of the raw embedding
   speed of the very same chunk texts measured in the same run (target >= 0.7), on >= 5 MB of text.
2. Search at 100k chunks: one query at a time, p50/p99 latency of the exact index (IndexFlatIP) and of the
   approximate one (HNSW), and the approximate index's recall@10 against the exact one (target: >= 0.95 recall at
   >= 5x lower p99). The 100k vectors are real MiniLM embeddings of 100k distinct generated sentences; the queries
   are 500 other generated questions. The same measurement at smaller sizes shows where the exact index stops
   being fast enough, which sets `knowledge.index.APPROXIMATE_FROM`.

    python -m bench.kb_ingest [--megabytes 5] [--chunks 100000] [--queries 500]
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import numpy as np

from bench.common import write_result
from core.settings import configure_process_environment

PRODUCTS = [
    "Arvo",
    "Brisk",
    "Cobalt",
    "Dune",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Mosaic",
    "Nimbus",
    "Onyx",
    "Pylon",
    "Quartz",
    "Ridge",
    "Sable",
    "Tundra",
]
PARTS = [
    "scheduler",
    "gateway",
    "indexer",
    "vault",
    "relay",
    "console",
    "agent",
    "mirror",
    "ledger",
    "probe",
    "broker",
    "cache",
]
VERBS = [
    "restarts",
    "rotates",
    "compresses",
    "encrypts",
    "replicates",
    "verifies",
    "throttles",
    "archives",
    "rebalances",
    "snapshots",
]
UNITS = ["seconds", "minutes", "hours", "days", "weeks"]
WORDS = [
    "alpha",
    "amber",
    "anchor",
    "arch",
    "atlas",
    "beacon",
    "birch",
    "blade",
    "bloom",
    "bolt",
    "breeze",
    "canyon",
    "cedar",
    "chord",
    "cinder",
    "cliff",
    "clover",
    "comet",
    "coral",
    "crest",
    "delta",
    "drift",
    "ember",
    "fable",
    "falcon",
    "fern",
    "flint",
    "forge",
    "frost",
    "glade",
    "glyph",
    "grove",
    "harbor",
    "hazel",
    "helix",
    "hollow",
    "indigo",
    "ivory",
    "jade",
    "jasper",
    "kelp",
    "lagoon",
    "lantern",
    "lark",
    "laurel",
    "lotus",
    "lunar",
    "maple",
    "marble",
    "meadow",
    "mesa",
    "mist",
    "nectar",
    "nova",
    "oasis",
    "opal",
    "orbit",
    "pebble",
    "pine",
    "plume",
    "prism",
    "quill",
    "raven",
    "reef",
    "ripple",
    "river",
    "sage",
    "shale",
    "sierra",
    "slate",
    "sonnet",
    "spruce",
    "summit",
    "tide",
    "timber",
    "topaz",
    "trail",
    "vale",
    "velvet",
    "willow",
]


def sentence(rng: random.Random) -> str:
    product, part, verb = rng.choice(PRODUCTS), rng.choice(PARTS), rng.choice(VERBS)
    detail = " ".join(rng.choices(WORDS, k=rng.randint(3, 7)))
    return (
        f"The {product} {part} {verb} the {detail} store every {rng.randint(2, 90)} {rng.choice(UNITS)} "
        f"unless option {part}_{rng.randint(1, 999)} is set to {rng.randint(1, 5000)}."
    )


def document(rng: random.Random, number: int) -> str:
    product = rng.choice(PRODUCTS)
    lines = [f"# {product} manual {number}", "", " ".join(sentence(rng) for _ in range(4)), ""]
    for part in rng.sample(PARTS, 4):
        lines += [f"## The {part}", "", " ".join(sentence(rng) for _ in range(rng.randint(3, 6))), ""]
        lines += [f"- {sentence(rng)}" for _ in range(rng.randint(3, 6))] + [""]
        lines += ["### Limits", "", " ".join(sentence(rng) for _ in range(3)), ""]
    return "\n".join(lines)


def corpus(megabytes: float, seed: int = 11) -> list[bytes]:
    rng, size = random.Random(seed), 0
    documents: list[bytes] = []
    while size < megabytes * 1_000_000:
        text = document(rng, len(documents)).encode()
        documents.append(text)
        size += len(text)
    return documents


def measure_throughput(megabytes: float) -> dict:
    """Whole ingestion vs raw embedding of the same chunk texts, in chunks per second."""
    from knowledge.chunking import ChunkingConfig, embedding_text
    from knowledge.embeddings import count_tokens, embed
    from knowledge.ingest import SourceDocument, build_index

    files = corpus(megabytes)
    sources = [SourceDocument(f"d{i}", 1, f"manual-{i}.md", "text/markdown") for i in range(len(files))]
    embed(["warm up the model"])
    started = time.perf_counter()
    outcome = build_index(sources, None, lambda d: files[int(d.document_id[1:])], embed, count_tokens, ChunkingConfig())
    end_to_end = time.perf_counter() - started
    chunks = outcome.index.chunks
    texts = [embedding_text(c.heading_path, c.text) for c in chunks]
    started = time.perf_counter()
    for start in range(0, len(texts), 256):  # the same batches the build uses
        embed(texts[start : start + 256])
    raw = time.perf_counter() - started
    tokens = [count_tokens(t) for t in texts[:2000]]
    return {
        "documents": len(files),
        "megabytes": round(sum(map(len, files)) / 1e6, 2),
        "chunks": len(chunks),
        "mean_chunk_tokens": round(float(np.mean(tokens)), 1),
        "end_to_end_seconds": round(end_to_end, 1),
        "raw_embedding_seconds": round(raw, 1),
        "end_to_end_chunks_per_second": round(len(chunks) / end_to_end, 1),
        "raw_embedding_chunks_per_second": round(len(chunks) / raw, 1),
        "ratio": round(raw / end_to_end, 3),
        "target_ratio": 0.7,
        "stage_seconds": outcome.seconds,
    }


def latencies(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    rows, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        _, found = index.search(query[None, :], k)
        seconds.append(time.perf_counter() - started)
        rows.append(found[0])
    return np.array(rows), seconds


def measure_search(n_chunks: int, n_queries: int, sizes: list[int]) -> dict:
    from knowledge.embeddings import embed
    from knowledge.index import HNSW_EF_SEARCH, VectorIndex

    rng = random.Random(23)
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < n_chunks + n_queries:
        text = sentence(rng)
        if text not in seen:
            seen.add(text)
            texts.append(text)
    started = time.perf_counter()
    vectors = np.concatenate([embed(texts[i : i + 512]) for i in range(0, len(texts), 512)])
    embedding_seconds = time.perf_counter() - started
    corpus_vectors, queries = vectors[:n_chunks], vectors[n_chunks:]
    rows: list[dict[str, Any]] = []
    for size in sizes:
        flat = VectorIndex.build(corpus_vectors[:size], approximate_from=size + 1)
        started = time.perf_counter()
        hnsw = VectorIndex.build(corpus_vectors[:size], approximate_from=0)
        build_seconds = time.perf_counter() - started
        exact, flat_seconds = latencies(flat, queries, 10)
        approximate, hnsw_seconds = latencies(hnsw, queries, 10)
        recall = float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate, exact, strict=True)]))
        p = {
            name: {q: round(1000 * float(np.percentile(s, q)), 3) for q in (50, 99)}
            for name, s in (("flat", flat_seconds), ("hnsw", hnsw_seconds))
        }
        rows.append(
            {
                "chunks": size,
                "flat_ms": p["flat"],
                "hnsw_ms": p["hnsw"],
                "hnsw_recall_at_10": round(recall, 4),
                "p99_speedup": round(p["flat"][99] / p["hnsw"][99], 2),
                "hnsw_build_seconds": round(build_seconds, 2),
            }
        )
    largest = rows[-1]
    return {
        "queries": n_queries,
        "k": 10,
        "hnsw_ef_search": HNSW_EF_SEARCH,
        "embedding_seconds": round(embedding_seconds, 1),
        "by_size": rows,
        "at_largest": largest,
        "meets_target": largest["hnsw_recall_at_10"] >= 0.95 and largest["p99_speedup"] >= 5,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=5.0)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    sizes = sorted({s for s in (5_000, 10_000, 20_000, 50_000, args.chunks) if s <= args.chunks})
    throughput = measure_throughput(args.megabytes)
    print(throughput, flush=True)
    write_result("kb_ingest", {"throughput": throughput, "search": measure_search(args.chunks, args.queries, sizes)})


if __name__ == "__main__":
    configure_process_environment()
    main()
