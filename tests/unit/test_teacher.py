"""The teacher client against a real HTTP server that speaks the chat-completions protocol and runs a real model."""

from __future__ import annotations

import pytest

from knowledge.index import ChunkRecord
from teacher import TeacherError, TeacherGenerator, parse_pairs
from tests.chat_server import chat_completions_app, serving
from tests.conftest import free_port

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
    # a model that writes no JSON pairs yields no candidates (validation would then report the dataset empty)
    pairs = teacher.generate([CHUNK], per_chunk=2)
    assert all(p.method == "teacher" and p.chunk is CHUNK for p in pairs) and len(pairs) <= 2
    assert "Network ports" in app.state.requests[-1]["messages"][1]["content"]


def test_refusals_and_outages_say_whether_a_retry_can_help(endpoint):
    url, _ = endpoint
    with pytest.raises(TeacherError, match="answered 401") as refused:
        TeacherGenerator(url, "tiny-teacher", api_key="wrong").complete("s", "u")
    assert refused.value.retryable is False
    with pytest.raises(TeacherError, match="did not answer") as down:
        TeacherGenerator(f"http://127.0.0.1:{free_port()}/v1", "tiny-teacher", timeout=2).complete("s", "u")
    assert down.value.retryable is True
