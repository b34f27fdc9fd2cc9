"""The teacher client against real HTTP servers that speak the chat-completions protocol: one runs a real model, one
answers from a script with pairs the whole generation path (parsing, the per-chunk cap, validation) accepts."""

from __future__ import annotations

from typing import Any

import pytest

from knowledge.chunking import embedding_text
from knowledge.index import ChunkRecord, KnowledgeIndex
from ml.generation import validate
from teacher import TeacherError, TeacherGenerator, parse_pairs
from testkit.chat_server import chat_completions_app, scripted_chat_app
from testkit.servers import free_port, serving

CHUNK = ChunkRecord(
    "c1", "d1", 1, "ports.md", 0, ["Network ports"], "- The web console is served over HTTPS on TCP port 7410.", 0, 56
)


def test_pairs_are_read_from_json_lines_and_anything_else_is_skipped():
    reply = (
        'Here you go:\n{"question": "Which port serves the console?", "answer": "Port 7410."}\n'
        '{"question": "broken", "answer": }\n{"question": "", "answer": "no question"}\n{"answer": "no question key"}\n'
        '{"question": "What protocol?", "answer": "HTTPS."}'
    )
    assert parse_pairs(reply) == [("Which port serves the console?", "Port 7410."), ("What protocol?", "HTTPS.")]
    assert parse_pairs("no json at all") == []


@pytest.fixture(scope="module")
def endpoint(tiny_model_dir):
    app = chat_completions_app(tiny_model_dir, api_key="teacher-key")
    with serving(app) as url:
        yield url, app


def test_the_client_speaks_the_protocol_to_a_real_server(endpoint):
    url, app = endpoint
    teacher = TeacherGenerator(url, "tiny-teacher", api_key="teacher-key")
    text = teacher.complete("You write questions.", "The console listens on port 7410.")
    assert isinstance(text, str)
    request = app.state.requests[-1]
    assert request["model"] == "tiny-teacher" and request["temperature"] == 0 and request["n"] == 1
    assert [m["role"] for m in request["messages"]] == ["system", "user"]


def scripted_teacher(messages: list[dict[str, Any]]) -> str:
    """What a good teacher writes for the passage about the console's port: chatter, three pairs, a broken object."""
    assert "port 7410" in messages[-1]["content"], messages
    return (
        "Sure, here are the pairs:\n"
        '{"question": "Which TCP port serves the web console?", '
        '"answer": "The web console is served over HTTPS on TCP port 7410."}\n'
        '{"question": "broken", "answer": }\n'
        '{"question": "Over which protocol is the web console served?", '
        '"answer": "The web console is served over HTTPS on TCP port 7410."}\n'
        '{"question": "A third one the cap leaves out?", "answer": "Yes."}'
    )


def test_a_teachers_pairs_are_parsed_capped_and_pass_validation(embedder):
    with serving(scripted_chat_app("teacher-key", scripted_teacher)) as url:
        pairs = TeacherGenerator(url, "scripted-teacher", api_key="teacher-key").generate([CHUNK], per_chunk=2)
    assert [(p.question, p.method, p.chunk) for p in pairs] == [
        ("Which TCP port serves the web console?", "teacher", CHUNK),
        ("Over which protocol is the web console served?", "teacher", CHUNK),
    ]
    index = KnowledgeIndex.build([CHUNK], embedder([embedding_text(CHUNK.heading_path, CHUNK.text)]))
    result = validate(pairs, index, embedder)
    assert [e.question for e in result.examples] == ["Which TCP port serves the web console?"]
    assert result.accepted_by_method == {"teacher": 1} and result.candidates == 2
    assert result.examples[0].lineage[0]["chunk_id"] == CHUNK.chunk_id


def test_refusals_and_outages_say_whether_a_retry_can_help(endpoint):
    url, _ = endpoint
    with pytest.raises(TeacherError, match="answered 401") as refused:
        TeacherGenerator(url, "tiny-teacher", api_key="wrong").complete("s", "u")
    assert refused.value.retryable is False
    with pytest.raises(TeacherError, match="did not answer") as down:
        TeacherGenerator(f"http://127.0.0.1:{free_port()}/v1", "tiny-teacher", timeout=2).complete("s", "u")
    assert down.value.retryable is True
