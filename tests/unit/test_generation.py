"""Generated datasets: statements, cloze questions, the local model's questions, and the validation every pair must pass
(supported answer, round trip to its chunk, no near duplicates, no near copy of a held-out example)."""

from __future__ import annotations

import pytest

from knowledge.chunking import embedding_text
from knowledge.index import ChunkRecord, KnowledgeIndex, chunk_id
from ml.examples import Example
from ml.generation import (
    GeneratedPair,
    LocalGenerator,
    ValidationConfig,
    clean_question,
    cloze_question,
    statements,
    validate,
)

CHUNKS = {
    "ports": (
        "Network ports",
        "- The web console is served over HTTPS on TCP port 7410.\n- File synchronization uses TCP port 7411.",
    ),
    "pairing": (
        "Pairing",
        "- `ferro pair` on the server generates a 6-digit pairing code.\n"
        "- Pairing codes expire 10 minutes after they are generated.",
    ),
    "trash": ("Storage", "Deleted files go to the trash and are kept for 21 days before permanent removal."),
    "logs": ("Logs", "Server logs are written to /var/log/ferrolink/ferro.log and rotated daily."),
}


@pytest.fixture(scope="module")
def index(embedder) -> KnowledgeIndex:
    records = [
        ChunkRecord(chunk_id(name, 1, 0), name, 1, f"{name}.md", 0, [heading], text, 0, len(text))
        for name, (heading, text) in CHUNKS.items()
    ]
    return KnowledgeIndex.build(records, embedder([embedding_text(r.heading_path, r.text) for r in records]))


def chunk(index: KnowledgeIndex, name: str) -> ChunkRecord:
    return next(c for c in index.chunks if c.document_id == name)


def test_a_chunk_breaks_into_its_statements_without_markup():
    assert statements(CHUNKS["pairing"][1]) == [
        "ferro pair on the server generates a 6-digit pairing code.",
        "Pairing codes expire 10 minutes after they are generated.",
    ]
    assert statements("Too short.\n- Item one is long enough to count here\nSee below:") == [
        "Item one is long enough to count here."
    ]


@pytest.mark.parametrize(
    ("statement", "question"),
    [
        (
            "Server logs are written to /var/log/ferrolink/ferro.log and rotated daily.",
            "Fill in the blank: Server logs are written to ____ and rotated daily.",
        ),
        (
            "FL-204 means a sync conflict, and error FL-301 means authentication failed.",
            "Fill in the blank: FL-204 means a sync conflict, and error ____ means authentication failed.",
        ),
        (
            "Pairing codes expire 10 minutes after they are generated.",
            "Fill in the blank: Pairing codes expire ____ after they are generated.",
        ),
        (
            "The maximum size of a single file is 256 GB.",
            "Fill in the blank: The maximum size of a single file is ____.",
        ),
        ("Single sign-on is available on the Enterprise tier.", None),  # nothing specific enough to blank out
    ],
)
def test_cloze_questions_blank_out_the_most_specific_span(statement, question):
    assert cloze_question(statement) == question


@pytest.mark.parametrize(
    ("reply", "question"),
    [
        ("How long are pairing codes valid?", "How long are pairing codes valid?"),
        ("Question: Which port does the console use?\nAnswer: 7410", "Which port does the console use?"),
        ("Which port is it? And why?", "Which port is it?"),  # the first question only
        ("Which port?", None),  # too short to stand alone
        ("The console uses port 7410.", None),  # not a question
        ("", None),
        ("?", None),
    ],
)
def test_a_model_reply_becomes_one_clean_question_or_none(reply, question):
    assert clean_question(reply) == question


def test_validation_keeps_grounded_pairs_with_their_lineage_and_counts_every_rejection(index, embedder):
    ports, trash = chunk(index, "ports"), chunk(index, "trash")
    pairs = [
        GeneratedPair(
            "Which TCP port serves the web console?",
            "The web console is served over HTTPS on TCP port 7410.",
            ports,
            "local-model",
        ),
        # the same statement again, from the backup method: not needed once the first passed
        GeneratedPair(
            "Fill in the blank: The web console is served over HTTPS on TCP port ____.",
            "The web console is served over HTTPS on TCP port 7410.",
            ports,
            "cloze",
        ),
        # unsupported
        GeneratedPair(
            "How long is a deleted file kept?",
            "Deleted files are kept for 90 days in the archive vault.",
            trash,
            "teacher",
        ),
        # supported, but the question leads to another chunk
        GeneratedPair(
            "Where are server logs written?",
            "Deleted files go to the trash and are kept for 21 days before permanent removal.",
            trash,
            "local-model",
        ),
        # near duplicate
        GeneratedPair(
            "Which TCP port serves the web console?",
            "The web console is served over HTTPS on TCP port 7410!",
            ports,
            "teacher",
        ),
    ]
    # with four chunks, the top one must be its own
    result = validate(pairs, index, embedder, config=ValidationConfig(top_k=1))
    assert [e.question for e in result.examples] == ["Which TCP port serves the web console?"]
    assert result.rejected == {"unsupported_answer": 1, "does_not_retrieve_its_chunk": 1, "near_duplicate": 1}
    assert result.candidates == 5 and result.accepted_by_method == {"local-model": 1} and result.yield_rate == 0.2
    example = result.examples[0]
    assert example.origin == "generated"
    assert example.lineage == [
        {
            "action": "generated",
            "method": "local-model",
            "document_id": "ports",
            "document_version": 1,
            "chunk_id": ports.chunk_id,
            "filename": "ports.md",
        }
    ]


def test_a_generated_example_that_nearly_copies_a_held_out_question_is_rejected(index, embedder):
    """Grounded leakage: generation never puts a feedback or test question (or a near copy) into training."""
    ports, pairing = chunk(index, "ports"), chunk(index, "pairing")
    held_out = [Example("How long are pairing codes valid for?", "Pairing codes expire after 10 minutes.")]
    pairs = [
        GeneratedPair(
            "How long are pairing codes valid?",
            "Pairing codes expire 10 minutes after they are generated.",
            pairing,
            "local-model",
        ),
        GeneratedPair(
            "Which TCP port does file synchronization use?",
            "File synchronization uses TCP port 7411.",
            ports,
            "local-model",
        ),
    ]
    result = validate(pairs, index, embedder, held_out=held_out, config=ValidationConfig(top_k=1))
    assert [e.question for e in result.examples] == ["Which TCP port does file synchronization use?"]
    assert result.rejected == {"near_held_out": 1}
    # without the held-out example, both pass
    assert validate(pairs, index, embedder, config=ValidationConfig(top_k=1)).rejected == {}


def test_the_local_generator_with_a_tiny_model_falls_back_to_cloze_questions(index, embedder, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    generator = LocalGenerator(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, batch_size=4, max_new_tokens=12
    )
    pairs = generator.generate(index.chunks, per_chunk=2)
    assert {p.method for p in pairs} <= {"local-model", "cloze"} and any(p.method == "cloze" for p in pairs)
    assert all(p.answer in statements(p.chunk.text) for p in pairs)  # answers are the chunks' own statements
    result = validate(pairs, index, embedder)
    # random weights write no usable question; cloze does
    assert result.examples and result.accepted_by_method.get("cloze", 0) >= 1
    # one question per statement
    assert len({(e.lineage[0]["chunk_id"], e.answer) for e in result.examples}) == len(result.examples)


@pytest.mark.real_model
def test_the_local_generator_on_the_real_weights_and_the_sample_knowledge_base(embedder, model_cache):
    """The offline default, judged by its validated yield on the sample's five documents (the README quotes it)."""
    from pathlib import Path

    from knowledge.chunking import ChunkingConfig
    from knowledge.documents import media_type_of
    from knowledge.embeddings import count_tokens
    from knowledge.ingest import SourceDocument, build_index
    from ml.base_model import load_model_and_tokenizer

    folder = Path(__file__).resolve().parents[2] / "data" / "sample" / "knowledge"
    files = {p.name: p.read_bytes() for p in sorted(folder.glob("*.*"))}
    index = build_index(
        [SourceDocument(n, 1, n, media_type_of(n)) for n in files],
        None,
        lambda d: files[d.filename],
        embedder,
        count_tokens,
        ChunkingConfig(48, 0),
    ).index
    model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct", model_cache)
    pairs = LocalGenerator(model, tokenizer).generate(index.chunks, per_chunk=2)
    result = validate(pairs, index, embedder)
    assert result.accepted_by_method.get("local-model", 0) > result.accepted_by_method.get("cloze", 0) > 0
    assert result.yield_rate >= 0.4 and len(result.examples) >= 60
    statements_answered = {(e.lineage[0]["chunk_id"], e.answer) for e in result.examples}
    assert len(statements_answered) == len(result.examples)


# ---------------------------------------------------------------- grounded targeting


@pytest.fixture(scope="module")
def tiny_generator(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return LocalGenerator(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        AutoTokenizer.from_pretrained(tiny_model_dir),
        batch_size=8,
        max_new_tokens=8,
    )


def test_grounded_targeting_generates_from_the_chunks_a_bad_case_retrieves_never_from_the_question(
    index, embedder, tiny_generator
):
    from ml.grounded_targeting import GroundedConfig, grounded_examples
    from schemas.reports import BadCase

    # a feedback example the model got wrong
    failed = Example("What is the TCP port of the web console?", "The console uses port 7410.")
    cases = [
        BadCase(
            example_id=failed.id,
            question=failed.question,
            expected=failed.answer,
            got="no idea",
            overall=0.1,
            split="feedback",
            error_type="wrong_content",
        ),
        BadCase(
            example_id="t1",
            question="q",
            expected="a",
            got=None,
            loss=3.0,
            split="train",
            error_type="high_training_loss",
        ),
    ]
    result = grounded_examples(
        cases,
        [],
        index,
        embedder,
        tiny_generator,
        held_out=[failed],
        existing=[],
        config=GroundedConfig(chunks_per_bad_case=1, questions_per_chunk=3),
    )
    ports = chunk(index, "ports")
    assert result.chunks == 1 and result.examples and result.targeted_bad_cases == 1
    for example in result.examples:
        assert example.answer in statements(ports.text)  # the chunk's own statements, never the held-out answer
        assert [(c["bad_case_id"], c["chunk_id"], c["action"]) for c in example.lineage] == [
            (failed.id, ports.chunk_id, "generated_from_chunk")
        ]
    assert failed.question not in {e.question for e in result.examples}
    assert result.candidates >= len(result.examples)


def test_the_control_generates_as_many_examples_from_random_chunks(index, embedder, tiny_generator):
    from ml.grounded_targeting import random_chunk_examples

    result = random_chunk_examples(3, index, embedder, tiny_generator, held_out=[], existing=[], seed=1)
    assert len(result.examples) == 3 and result.targeted_bad_cases == 0
    assert all(
        e.lineage[0]["action"] == "generated_from_random_chunk" and "bad_case_id" not in e.lineage[0]
        for e in result.examples
    )
    assert random_chunk_examples(0, index, embedder, tiny_generator, [], [], seed=1).examples == []


# ---------------------------------------------------------------- a knowledge update's changed facts


def test_a_knowledge_update_generates_examples_only_from_the_statements_it_changed(index, embedder, tiny_generator):
    from ml.grounded_targeting import changed_fact_examples, changed_statements

    changed = {
        **CHUNKS,
        "ports": (
            "Network ports",
            "- The web console is served over HTTPS on TCP port 7420.\n- File synchronization uses TCP port 7411.",
        ),
        "backup": ("Backups", "Nightly backups are written to /srv/ferrolink/backups and kept for 14 days."),
    }
    records = [
        ChunkRecord(chunk_id(name, 2, 0), name, 2, f"{name}.md", 0, [heading], text, 0, len(text))
        for name, (heading, text) in changed.items()
    ]
    newer = KnowledgeIndex.build(records, embedder([embedding_text(r.heading_path, r.text) for r in records]))

    # the changed port and the new document; the unchanged statements (sync port, pairing, trash, logs) are not new
    cut = changed_statements(index, newer)
    assert [(c.document_id, statements(c.text)) for c in cut] == [
        ("ports", ["The web console is served over HTTPS on TCP port 7420."]),
        ("backup", ["Nightly backups are written to /srv/ferrolink/backups and kept for 14 days."]),
    ]
    assert changed_statements(newer, newer) == []

    held_out = [Example("Which port is the web console on now?", "It is on TCP port 7420.")]
    result = changed_fact_examples(index, newer, embedder, tiny_generator, held_out=held_out, existing=[])
    assert result.examples and result.chunks == 2
    new_facts = {s for c in cut for s in statements(c.text)}
    for example in result.examples:
        assert example.answer in new_facts  # never the old port, never an unchanged statement
        source = example.lineage[0]
        assert source["action"] == "generated_from_changed_chunk" and source["document_version"] == 2
        # validated against the whole new chunk: it names its chunk in the new index
        assert source["chunk_id"] in {c.chunk_id for c in newer.chunks}
    assert held_out[0].question not in {e.question for e in result.examples}
    assert changed_fact_examples(newer, newer, embedder, tiny_generator, [], []).examples == []
