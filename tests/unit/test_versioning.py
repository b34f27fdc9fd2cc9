"""Dataset versions as a library: canonical rows and their ids, content hashes, diffs, annotations and exports."""

from __future__ import annotations

import json

import pytest

from ml.optimizer import clean_dataset
from versioning.annotations import AnnotationError, RowEdit, apply_edits
from versioning.diff import diff_rows
from versioning.export import export_lines, reviewed
from versioning.rows import canonical_jsonl, content_hash, read_version, rows_of
from versioning.scrub import Needles, scrub_blob, scrub_json

ROWS = [
    {"question": "What port does the console use?", "answer": "The console listens on port 7410."},
    {"question": "Does FerroLink run on Windows?", "answer": "No, the server runs on Linux only."},
    {"instruction": "Name the sync error code", "input": "", "output": "FL-204 is a sync conflict."},
]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_the_same_rows_in_any_format_or_key_order_hash_alike_and_keep_their_ids(tmp_path):
    as_jsonl = read_version(write(tmp_path, "a.jsonl", jsonl(ROWS[:2])), "jsonl")
    reordered = read_version(
        write(tmp_path, "b.json", json.dumps([{"answer": r["answer"], "question": r["question"]} for r in ROWS[:2]])),
        "json",
    )
    as_csv = read_version(
        write(
            tmp_path, "c.csv", "question,answer\n" + "".join(f'"{r["question"]}","{r["answer"]}"\n' for r in ROWS[:2])
        ),
        "csv",
    )
    assert [r.id for r in as_jsonl] == [r.id for r in reordered] == [r.id for r in as_csv]
    assert content_hash(as_jsonl) == content_hash(reordered) == content_hash(as_csv)
    # a corrected answer keeps the row's id (it is the question's), and changes the hash
    corrected = read_version(
        write(tmp_path, "d.jsonl", jsonl([ROWS[0], {**ROWS[1], "answer": "No: Linux only."}])), "jsonl"
    )
    assert [r.id for r in corrected] == [r.id for r in as_jsonl]
    assert content_hash(corrected) != content_hash(as_jsonl)


def test_a_row_keeps_its_own_id_and_repeated_questions_get_numbered_ids():
    rows = list(
        rows_of([(1, {"id": "faq-1", **ROWS[0]}), (2, ROWS[1]), (3, ROWS[1]), (4, {"id": "bad id!", **ROWS[2]})])
    )
    assert rows[0].id == "faq-1" and "id" not in rows[0].record
    assert rows[2].id == rows[1].id + "-2"
    assert rows[3].id.startswith("q")  # an id that is not usable is replaced by the question's hash


def test_the_diff_shows_added_removed_and_changed_rows_with_the_fields_that_changed():
    before = list(rows_of(enumerate(ROWS, 1)))
    after_rows = [{**ROWS[0], "answer": "Port 7410."}, ROWS[2], {"question": "New?", "answer": "Yes."}]
    diff = diff_rows(before, list(rows_of(enumerate(after_rows, 1))))
    assert diff.counts == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}
    assert diff.changed[0].id == before[0].id and diff.changed[0].fields == ["answer"]
    assert diff.removed[0].id == before[1].id and diff.added[0].record["question"] == "New?"


def test_annotations_correct_answers_and_checks_tag_and_exclude_and_refuse_bad_edits():
    rows = list(rows_of(enumerate(ROWS, 1)))
    edited = apply_edits(
        rows,
        [
            RowEdit(rows[0].id, answer="The web console listens on port 7410."),
            RowEdit(rows[1].id, checks=[{"type": "polarity", "value": "no", "derived": True}], add_tags=["os"]),
            RowEdit(rows[2].id, excluded=True),
        ],
    )
    assert edited[0].record["answer"] == "The web console listens on port 7410."
    assert edited[1].record["checks"][0]["derived"] is False  # a person's checks are reviewed ones
    assert edited[1].tags == ["os"] and edited[2].excluded and edited[2].record["output"] == ROWS[2]["output"]
    assert rows[0].record["answer"] == ROWS[0]["answer"]  # the version before is untouched
    assert apply_edits(edited, [RowEdit(rows[1].id, remove_tags=["os"])])[1].tags == []
    with pytest.raises(AnnotationError, match="'nope' is not in this version"):
        apply_edits(rows, [RowEdit("nope", answer="x")])
    with pytest.raises(AnnotationError, match=rf"row '{rows[1].id}': 'checks.0.polarity.value'"):
        apply_edits(rows, [RowEdit(rows[1].id, checks=[{"type": "polarity", "value": "maybe"}])])
    with pytest.raises(AnnotationError, match="changes nothing"):
        apply_edits(rows, [RowEdit(rows[0].id, answer=ROWS[0]["answer"])])


def test_a_chat_rows_correction_changes_its_last_assistant_turn():
    chat = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Which port?"},
            {"role": "assistant", "content": "7411."},
        ]
    }
    [row] = apply_edits(list(rows_of([(1, chat)])), [RowEdit(next(rows_of([(1, chat)])).id, answer="7410.")])
    assert [m["content"] for m in row.record["messages"]] == ["Hi", "Hello.", "Which port?", "7410."]


def test_review_derives_checks_where_a_row_has_none_and_exports_leave_excluded_rows_out_of_training_formats():
    rows = list(rows_of(enumerate(ROWS, 1)))
    rows = apply_edits(rows, [RowEdit(rows[2].id, excluded=True)])
    review = reviewed(rows)
    assert review[1].checks == [{"derived": True, "type": "polarity", "value": "no"}]
    assert review[2].excluded
    assert len(list(export_lines(rows, "jsonl"))) == 3
    alpaca = [json.loads(line) for line in export_lines(rows, "alpaca")]
    chat = [json.loads(line) for line in export_lines(rows, "chat")]
    assert [r["id"] for r in alpaca] == [r["id"] for r in chat] == [rows[0].id, rows[1].id]
    assert alpaca[0]["instruction"] == ROWS[0]["question"] and alpaca[0]["output"] == ROWS[0]["answer"]
    assert chat[1]["messages"][1] == {"role": "assistant", "content": ROWS[1]["answer"]}


def test_an_annotated_version_trains_without_its_excluded_rows(tmp_path):
    rows = list(rows_of(enumerate(ROWS, 1)))
    rows = apply_edits(rows, [RowEdit(rows[1].id, excluded=True)])
    path = tmp_path / "v2.jsonl"
    path.write_bytes(canonical_jsonl(rows))
    cleaned = clean_dataset(path, "jsonl")
    assert [e.question for e in cleaned.examples] == [ROWS[0]["question"], ROWS[2]["instruction"]]
    assert cleaned.removed_counts == {"excluded": 1}
    assert content_hash(read_version(path, "jsonl")) == content_hash(rows)  # the stored file reads back the same


def test_scrubbing_drops_what_mentions_an_erased_text_and_leaves_the_rest():
    needles = Needles(["Which port does the console use?", "The console listens on port 7410."])
    report = {
        "examples": [
            {"question": "which port does the  console use?", "answer": "7410"},
            {"question": "Other?", "answer": "Other."},
        ],
        "summary": "Asked: Which port does the console use? Then others.",
        "count": 2,
    }
    assert scrub_json(report, needles) == {
        "examples": [{"question": "Other?", "answer": "Other."}],
        "summary": "Asked: [erased] Then others.",
        "count": 2,
    }
    lines = b'{"q": "Which port does the console use?"}\n{"q": "Other?"}\n'
    assert scrub_blob("train.jsonl", lines, needles) == b'{"q": "Other?"}\n'
    assert scrub_blob("report.md", b"| The console listens on port 7410. | right |", needles) == b"| [erased] | right |"
    assert scrub_blob("notes.md", b"nothing to see", needles) is None
    assert scrub_blob("adapter.safetensors", b"\xff\xfe\x00binary", needles) is None
    assert Needles(["No."]).texts == []  # too short to erase safely
