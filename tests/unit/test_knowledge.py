"""The knowledge library: every format parsed from files made here, chunk boundaries, the index, incremental builds."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from knowledge.chunking import ChunkingConfig, chunk_document, embedding_text
from knowledge.documents import DocumentError, ParsedDocument, Section, check_content, media_type_of, parse_document
from knowledge.embeddings import count_tokens
from knowledge.index import ChunkRecord, KnowledgeIndex, VectorIndex, chunk_id
from knowledge.ingest import SourceDocument, build_index
from testkit.documents import HTML, MARKDOWN, make_pdf

REPO = Path(__file__).resolve().parents[2]


def section_texts(document: ParsedDocument) -> list[tuple[list[str], str]]:
    return [(s.heading_path, document.text[s.start : s.end].strip()) for s in document.sections]


# ---------------------------------------------------------------- parsing each format


def test_markdown_sections_carry_their_heading_paths():
    document = parse_document(MARKDOWN.encode(), media_type_of("guide.md"))
    # "Backups" has no text of its own, so no section, but it stays in its child's path
    assert section_texts(document) == [
        (["FerroLink guide"], "FerroLink syncs files between your devices."),
        (
            ["FerroLink guide", "Network ports"],
            "- The web console is served over HTTPS on TCP port 7410.\n- File synchronization uses TCP port 7411.",
        ),
        (
            ["FerroLink guide", "Backups", "Retention"],
            "Hourly snapshots are kept for 48 hours. Daily snapshots are kept for 30 days.",
        ),
    ]


def test_plain_text_is_one_section():
    document = parse_document(b"Line one.\nLine two.", media_type_of("notes.TXT"))
    assert document.media_type == "text/plain" and section_texts(document) == [([], "Line one.\nLine two.")]


def test_html_keeps_the_content_and_headings_and_drops_navigation_and_boilerplate():
    document = parse_document(HTML.encode(), media_type_of("security.html"))
    text = document.text
    assert "XChaCha20-Poly1305" in text and "30 minutes of inactivity" in text
    # navigation, banner and footer are gone
    assert "Pricing" not in text and "Cookie settings" not in text and "cookies" not in text
    paths = [s.heading_path for s in document.sections]
    assert ["Security", "Sessions"] in paths
    sessions = next(s for s in document.sections if s.heading_path == ["Security", "Sessions"])
    assert "TOTP" in text[sessions.start : sessions.end]


def test_the_sample_knowledge_base_loses_no_fact_and_keeps_no_boilerplate():
    """Each shipped document, in its format, holds exactly the facts of its Markdown source
    (data/sample/make_knowledge.py)."""
    folder = REPO / "data" / "sample" / "knowledge"
    texts = {
        path.name: " ".join(parse_document(path.read_bytes(), media_type_of(path.name)).text.split())
        for path in sorted(folder.iterdir())
        if path.is_file()
    }
    assert [name.rsplit(".", 1)[1] for name in texts] == ["txt", "md", "pdf", "md", "html"]  # every format is used
    facts = [
        line[2:].replace("`", "")
        for source in ("source", ".")
        for path in sorted((folder / source).glob("*.md"))
        for line in path.read_text().splitlines()
        if line.startswith("- ")
    ]
    assert len(facts) == 89
    everything = " ".join(texts.values()).replace("`", "")
    missing = [fact for fact in facts if " ".join(fact.split()) not in everything]
    assert not missing, missing
    assert not re.search(r"cookies|Careers|Related articles|All rights reserved", everything)


def test_pdf_text_comes_page_by_page():
    document = parse_document(
        make_pdf(["Pairing codes expire after 10 minutes.", "The maximum file size is 256 GB."]),
        media_type_of("facts.pdf"),
    )
    assert [(path, " ".join(text.split())) for path, text in section_texts(document)] == [
        (["page 1"], "Pairing codes expire after 10 minutes."),
        (["page 2"], "The maximum file size is 256 GB."),
    ]


@pytest.mark.parametrize(
    ("data", "media_type", "message"),
    [
        (b"%PDF-1.7\n this is not a real pdf at all", "application/pdf", "not a readable PDF"),
        (b"   \n\n  ", "text/markdown", "holds no text"),
        (b"# Title only\n", "text/markdown", "holds no text"),
        ("caf\u00e9".encode("latin-1"), "text/plain", "not valid UTF-8"),
        (b"<html><head><title>t</title></head><body>  </body></html>", "text/html", "holds no text"),
    ],
)
def test_unreadable_or_empty_documents_say_why(data, media_type, message):
    with pytest.raises(DocumentError, match=message):
        parse_document(data, media_type)


def test_an_empty_pdf_has_no_text():
    with pytest.raises(DocumentError, match="holds no text"):
        parse_document(make_pdf([""]), "application/pdf")


def test_types_are_checked_by_name_and_first_bytes():
    assert media_type_of("a.markdown") == "text/markdown" and media_type_of("A.HTM") == "text/html"
    for name in ("data.docx", "noext", "", "archive.pdf.zip"):
        with pytest.raises(DocumentError, match="unsupported document type"):
            media_type_of(name)
    check_content(b"%PDF-1.4\n...", "application/pdf")
    with pytest.raises(DocumentError, match="not a PDF"):
        check_content(b"hello", "application/pdf")
    with pytest.raises(DocumentError, match="binary data"):
        check_content(b"PK\x03\x04\x00\x00", "text/markdown")


# ---------------------------------------------------------------- chunk boundaries

SENTENCE = re.compile(r"[^.!?]+[.!?]")


def long_section_document() -> ParsedDocument:
    sentences = [
        f"Fact number {i} says that the setting called option{i} defaults to value {i * 7} in every release."
        for i in range(40)
    ]
    items = [f"- Item {i}: the command ferro item{i} prints the state of subsystem {i}." for i in range(30)]
    text = " ".join(sentences) + "\n\n" + "\n".join(items) + "\n"
    return ParsedDocument("text/markdown", text, [Section(["Guide"], 0, len(text))])


def test_chunks_stay_within_their_size_and_never_start_or_end_inside_a_sentence_or_item():
    document = long_section_document()
    config = ChunkingConfig(chunk_tokens=60, overlap_tokens=16)
    chunks = chunk_document(document, count_tokens, config)
    assert len(chunks) > 5
    sentences = {m.group().strip() for m in SENTENCE.finditer(document.text.split("\n\n")[0])}
    items = set(document.text.split("\n\n")[1].splitlines())
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text and chunk.heading_path == ["Guide"]
        assert count_tokens(chunk.text) <= config.chunk_tokens + config.overlap_tokens
        lines = chunk.text.splitlines()
        if lines[0].startswith("- "):  # a list chunk: whole items only
            assert set(lines) <= items, chunk.text
        else:  # a prose chunk: whole sentences only (every sentence fits the size, so none needs splitting)
            pieces = [p.strip() for p in SENTENCE.findall(chunk.text.split("\n\n")[0])]
            assert pieces and "".join(pieces).replace(" ", "") == chunk.text.split("\n\n")[0].replace(" ", ""), (
                chunk.text
            )
            assert set(pieces) <= sentences, chunk.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_consecutive_chunks_overlap_by_whole_sentences_within_the_budget():
    document = long_section_document()
    chunks = chunk_document(document, count_tokens, ChunkingConfig(chunk_tokens=60, overlap_tokens=20))
    overlaps = [previous.end - current.start for previous, current in pairwise(chunks) if current.start < previous.end]
    assert overlaps, "some chunks should overlap"
    for previous, current in pairwise(chunks):
        shared = document.text[current.start : previous.end]
        assert count_tokens(shared) <= 20
    without = chunk_document(document, count_tokens, ChunkingConfig(chunk_tokens=60, overlap_tokens=0))
    assert all(b.start >= a.end for a, b in pairwise(without))


def test_a_document_versions_text_is_read_back_from_its_overlapping_chunks():
    """What staleness compares: the chunks' text, overlaps once, sections' gaps as line breaks, one version only."""
    document = long_section_document()
    chunks = chunk_document(document, count_tokens, ChunkingConfig(chunk_tokens=60, overlap_tokens=20))
    assert any(current.start < previous.end for previous, current in pairwise(chunks))
    records = [
        ChunkRecord(chunk_id("d", version, c.ordinal), "d", version, "d.md", c.ordinal, [], c.text, c.start, c.end)
        for version in (1, 2)
        for c in chunks
    ]
    gap = [  # a heading between two sections is in no chunk
        ChunkRecord("a", "g", 1, "g.md", 0, ["A"], "Alpha is first.", 4, 19),
        ChunkRecord("b", "g", 1, "g.md", 1, ["B"], "Beta is second.", 25, 40),
    ]
    index = KnowledgeIndex.build(records + gap, np.zeros((len(records) + 2, 384), dtype=np.float32))
    assert index.document_text("d", 1) == index.document_text("d", 2) == document.text[chunks[0].start : chunks[-1].end]
    assert index.document_text("g", 1) == "Alpha is first.\nBeta is second."
    assert index.document_text("d", 3) is None and index.document_text("other", 1) is None


def test_a_sentence_longer_than_a_chunk_is_split_because_it_must_be():
    words = " ".join(f"word{i}" for i in range(300)) + "."
    document = ParsedDocument("text/plain", words, [Section([], 0, len(words))])
    chunks = chunk_document(document, count_tokens, ChunkingConfig(chunk_tokens=50, overlap_tokens=0))
    assert len(chunks) > 1 and all(count_tokens(c.text) <= 50 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == words.split()


def test_chunks_never_cross_sections_and_the_heading_path_is_embedded_first():
    document = parse_document(MARKDOWN.encode(), "text/markdown")
    chunks = chunk_document(document, count_tokens, ChunkingConfig(chunk_tokens=200, overlap_tokens=32))
    assert [c.heading_path for c in chunks] == [s.heading_path for s in document.sections]
    assert embedding_text(chunks[1].heading_path, chunks[1].text).startswith(
        "FerroLink guide > Network ports\n- The web console"
    )
    assert embedding_text([], "plain") == "plain"


# ---------------------------------------------------------------- the index


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def records(n: int, document_id: str = "d") -> list[ChunkRecord]:
    return [
        ChunkRecord(chunk_id(document_id, 1, i), document_id, 1, f"{document_id}.md", i, ["H"], f"text {i}", 0, 6)
        for i in range(n)
    ]


def test_exact_and_approximate_indexes_find_a_vector_itself_first():
    vectors = unit_vectors(500)
    flat, hnsw = VectorIndex.build(vectors, approximate_from=10_000), VectorIndex.build(vectors, approximate_from=100)
    assert (flat.kind, hnsw.kind) == ("flat", "hnsw")
    for index in (flat, hnsw):
        scores, rows = index.search(vectors[:20], 3)
        assert list(rows[:, 0]) == list(range(20)) and np.allclose(scores[:, 0], 1.0, atol=1e-4)


def test_an_index_version_saves_and_loads_and_searches_the_same(tmp_path):
    vectors = unit_vectors(50)
    built = KnowledgeIndex.build(records(50), vectors)
    loaded = KnowledgeIndex.load(built.save(tmp_path / "v1"))
    assert loaded.chunks == built.chunks and np.array_equal(loaded.vectors, built.vectors)
    first, again = built.search(vectors[7:8], 5)[0], loaded.search(vectors[7:8], 5)[0]
    assert [(h.chunk.chunk_id, h.rank) for h in first] == [(h.chunk.chunk_id, h.rank) for h in again]
    assert first[0].chunk.ordinal == 7 and first[0].rank == 1
    assert KnowledgeIndex.empty().search(vectors[:2], 5) == [[], []]
    # fewer chunks than asked
    assert KnowledgeIndex.build(records(3), vectors[:3]).search(vectors[:1], 10)[0][-1].rank == 3
    with pytest.raises(ValueError):
        KnowledgeIndex.build(records(3), vectors[:2])


# ---------------------------------------------------------------- incremental builds


class RecordingEmbedder:
    """The real MiniLM embedder, counting what it is asked to embed."""

    def __init__(self, embed):
        self.embed, self.texts = embed, []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.embed(texts)


def documents_store() -> dict[str, bytes]:
    return {
        "ports.md": b"# Ports\n\nThe web console listens on TCP port 7410. Sync uses TCP port 7411.\n",
        "backups.md": (
            b"# Backups\n\nScheduled backups run daily at 02:00 server time. Hourly snapshots are kept for 48 hours.\n"
        ),
        "errors.txt": b"FL-204 is a sync conflict. FL-301 means authentication failed.\n",
    }


def test_a_changed_document_re_embeds_only_its_own_chunks_and_a_deleted_one_leaves(embedder):
    files = documents_store()
    sources = [SourceDocument(name.split(".")[0], 1, name, media_type_of(name)) for name in files]

    def read(document: SourceDocument) -> bytes:
        return files[document.filename]

    first_embedder = RecordingEmbedder(embedder)
    first = build_index(sources, None, read, first_embedder, count_tokens)
    assert [o.status for o in first.documents] == ["INDEXED"] * 3 and first.embedded_chunks == len(
        first.index.chunks
    ) == 3
    assert len(first_embedder.texts) == 3

    # backups.md changes (version 2), errors.txt is deleted, ports.md stays
    files["backups.md"] = b"# Backups\n\nScheduled backups run daily at 03:30 server time.\n"
    second_sources = [sources[0], SourceDocument("backups", 2, "backups.md", "text/markdown")]
    second_embedder = RecordingEmbedder(embedder)
    second = build_index(second_sources, first.index, read, second_embedder, count_tokens)
    assert second.embedded_chunks == 1 and second_embedder.texts == [
        "Backups\nScheduled backups run daily at 03:30 server time."
    ]
    assert [(o.document_id, o.embedded) for o in second.documents] == [("ports", False), ("backups", True)]
    assert {c.document_id for c in second.index.chunks} == {"ports", "backups"}
    # the unchanged document keeps its chunk and its very vector
    assert second.index.chunks[0] == first.index.chunks[0] and np.array_equal(
        second.index.vectors[0], first.index.vectors[0]
    )
    hits = second.index.search(embedder(["When do backups run?"]), 2)[0]
    assert hits[0].chunk.document_id == "backups" and "03:30" in hits[0].chunk.text
    assert all("FL-204" not in h.chunk.text for h in second.index.search(embedder(["What is FL-204?"]), 5)[0])


def test_a_failed_document_is_reported_and_the_rest_are_indexed_with_stable_ids(embedder):
    files = {**documents_store(), "broken.pdf": b"%PDF-1.4\nnot really"}
    sources = [SourceDocument(name.split(".")[0], 1, name, media_type_of(name)) for name in files]
    outcome = build_index(sources, None, lambda d: files[d.filename], embedder, count_tokens)
    failed = [o for o in outcome.documents if o.status == "FAILED"]
    assert [(o.document_id, o.chunk_count) for o in failed] == [("broken", 0)] and "not a readable PDF" in failed[
        0
    ].error
    assert len(outcome.index.chunks) == 3
    again = build_index(sources, None, lambda d: files[d.filename], embedder, count_tokens)  # a retried build
    assert [c.chunk_id for c in again.index.chunks] == [c.chunk_id for c in outcome.index.chunks]
    assert len({c.chunk_id for c in outcome.index.chunks}) == 3
