"""Multi-turn chat rows with the shipped model's tokenizer (SmolLM2's chat template): every assistant turn is trained,
the masks are held to the template rendered one prefix at a time, a row with no supervised token is left out with its
reason, conversations are asked after their earlier turns, and the QA history's conversations export as chat rows."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from db.models import QAEntry
from ml.chat import conversation_training_ids, prompt_ids, rendered, training_ids
from ml.examples import Example
from ml.optimizer import clean_dataset
from ml.trainer import tokenize_with_masks
from services.qa import feedback_examples

CONVERSATION = [
    {"role": "user", "content": "Which port does the web console use?"},
    {"role": "assistant", "content": "The web console listens on port 7410."},
    {"role": "user", "content": "And the metrics endpoint?"},
    {"role": "assistant", "content": "Metrics are served on port 7412."},
    {"role": "user", "content": "Does a port change need a restart?"},
    {"role": "assistant", "content": "Yes, port changes need a service restart."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def spans(labels: list[int]) -> list[tuple[int, int]]:
    """The runs of supervised positions."""
    out, start = [], None
    for i, label in enumerate([*labels, -100]):
        if label != -100 and start is None:
            start = i
        elif label == -100 and start is not None:
            out.append((start, i))
            start = None
    return out


def test_a_three_turn_conversation_trains_all_three_assistant_turns_as_the_template_renders_them(tokenizer):
    history, question, answer = CONVERSATION[:4], CONVERSATION[4]["content"], CONVERSATION[5]["content"]
    ids, labels = conversation_training_ids(tokenizer, history, question, answer, 512)
    # the ids are the template's own rendering of the whole conversation, under the training system prompt
    assert ids == rendered(tokenizer, [{"role": "system", "content": "Answer in one short sentence."}, *CONVERSATION])
    supervised = spans(labels)
    assert len(supervised) == 3
    for (start, end), turn in zip(supervised, CONVERSATION[1::2], strict=True):
        assert labels[start:end] == ids[start:end]
        assert ids[end - 1] == tokenizer.eos_token_id  # each turn ends with its end-of-turn token, trained too
        assert tokenizer.decode(ids[start : end - 1]) == turn["content"]
        # what precedes each turn is exactly the prompt the model sees when it answers it
        before = [{"role": "system", "content": "Answer in one short sentence."}]
        before += CONVERSATION[: CONVERSATION.index(turn)]
        assert ids[:start] == rendered(tokenizer, before, add_generation_prompt=True)
    unsupervised = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == -100])
    assert all(m["content"] in unsupervised for m in CONVERSATION[0::2])  # the user turns are never trained
    assert not any(m["content"] in unsupervised for m in CONVERSATION[1::2])


def test_a_single_question_trains_as_before_and_a_conversation_is_asked_after_its_turns(tokenizer):
    assert training_ids(tokenizer, "What port?", "Port 7410.", 64, history=[]) == training_ids(
        tokenizer, "What port?", "Port 7410.", 64
    )
    asked = tokenizer.decode(prompt_ids(tokenizer, "Does a port change need a restart?", history=CONVERSATION[:4]))
    assert "port 7410" in asked and asked.rstrip().endswith("assistant")


def test_rows_without_a_supervised_token_are_left_out_with_their_reason(tokenizer):
    long_history = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    examples = [
        Example("Q1?", "A1.", history=CONVERSATION[:4]),
        Example("Q2?", "A2.", history=long_history),
        Example("Q3?", "A3."),
    ]
    rows, stats = tokenize_with_masks(tokenizer, examples, 120)
    assert len(rows) == 2 and stats.examples == 2 and stats.conversations == 1
    assert stats.assistant_turns == 3 + 1
    assert stats.rejected == {"no supervised token within max_seq_length": 1}
    assert 0 < stats.supervised_share < 1


def test_a_chat_row_keeps_its_earlier_turns_and_the_qa_history_exports_conversations(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "system", "content": "Be brief."}, *CONVERSATION]}) + "\n")
    [example] = clean_dataset(path, "jsonl").examples
    assert example.question == CONVERSATION[4]["content"] and example.history == CONVERSATION[:4]
    conversation = QAEntry(
        id="e1", model="bot@1", messages=CONVERSATION[:5], answer="No.", corrected_answer="Yes.", status="completed"
    )
    single = QAEntry(id="e2", model="bot@1", messages=CONVERSATION[:1], answer="7410.", rating="up", status="completed")
    rows = feedback_examples([conversation, single])
    assert rows[0]["messages"] == [*CONVERSATION[:5], {"role": "assistant", "content": "Yes."}]
    assert rows[1]["question"] == CONVERSATION[0]["content"] and "messages" not in rows[1]
