"""Dataset versions as a library: canonical rows and their ids, content hashes, diffs, annotations and exports."""

from __future__ import annotations

import json
import random
import string

import orjson
import pytest

from ml.optimizer import clean_dataset
from versioning.annotations import AnnotationError, RowEdit, apply_edits
from versioning.diff import diff_canonical, diff_rows
from versioning.export import export_lines, reviewed
from versioning.rows import (
    ROW_ID,
    CanonicalFile,
    Row,
    canonical_jsonl,
    content_hash,
    read_canonical,
    read_version,
    rows_of,
    with_added,
)
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


def test_rows_added_to_a_version_keep_the_others_ids_and_take_ids_none_of_them_has():
    rows = list(rows_of([(1, ROWS[0]), (2, ROWS[1])]))
    added = with_added(rows, [ROWS[1], ROWS[2], {"id": rows[0].id, **ROWS[1]}])
    assert added[:2] == rows
    assert added[2].id == rows[1].id + "-2" and added[3].id == rows_of([(1, ROWS[2])]).__next__().id
    assert added[4].id == rows[1].id + "-3" and "id" not in added[4].record  # a record's own id is not trusted here
    assert len({r.id for r in added}) == 5


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


# --- canonical files, read and diffed without parsing their shared rows -------------------------------------------


def generated_version(rng: random.Random, n: int) -> list[dict]:
    """Rows of every kind a version holds: question/answer with checks, alpaca, chat, a row with its own id, repeated
    questions, tags and exclusions, non-ASCII text, a record of unknown fields and an empty one."""
    rows: list[dict] = []
    for i in range(n):
        kind = i % 7
        question = f"Quelle est la clé n°{i} — 日本語 {rng.randint(0, 9)}?" if kind == 1 else f"Which port is {i}?"
        if kind == 2:
            rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Oui."}]})
        elif kind == 3:
            rows.append({"instruction": question, "input": "", "output": f"Port {i}.", "tags": ["net", "a"]})
        elif kind == 4:
            rows.append({"id": f"faq-{i}", "question": question, "answer": f"Port {i}.", "excluded": True})
        else:
            rows.append({"question": question, "answer": f"Port {i}.", "checks": [{"type": "number", "value": i}]})
    rows += [rows[0], {"question": rows[5]["question"], "answer": "Another port."}]  # repeated questions
    return [*rows, {"note": "a record of no known format"}, {}]


def next_version(rng: random.Random, rows: list[dict]) -> list[dict]:
    """Rows removed, changed (answers, tags, exclusions, checks), moved, and added."""
    out = []
    for row in rows:
        roll = rng.random()
        if roll < 0.1:
            continue
        if roll < 0.2 and "answer" in row:
            row = {**row, "answer": row["answer"] + " Unless configured — ça dépend."}
        elif roll < 0.25:
            row = {**row, "tags": ["reviewed"], "excluded": not row.get("excluded")}
        elif roll < 0.4 and "checks" in row:
            row = {k: v for k, v in row.items() if k != "checks"}
        out.append(row)
    out.insert(rng.randrange(len(out)), out.pop(0))  # a row moved: the same row, unchanged
    return out + [{"question": f"Nouveau {i} ?", "answer": "Oui."} for i in range(rng.randint(1, 5))]


def stored(tmp_path, name: str, records: list[dict]):
    """A version as the platform stores it: the upload's rows written canonical, and the hash it records."""
    rows = read_version(write(tmp_path, name + ".jsonl", jsonl(records)), "jsonl")
    path = tmp_path / f"{name}.stored.jsonl"
    path.write_bytes(canonical_jsonl(rows))
    return path, content_hash(rows)


@pytest.mark.parametrize("seed", range(5))
def test_a_canonical_files_hash_made_from_its_bytes_is_the_content_hash_of_its_rows(tmp_path, seed):
    rng = random.Random(seed)
    path, recorded = stored(tmp_path, "v1", generated_version(rng, 60))
    rows = read_version(path, "jsonl")
    canonical = read_canonical(path.read_bytes())
    assert canonical is not None and canonical.content_hash == content_hash(rows) == recorded
    assert canonical.rows() == rows  # every row, parsed from the file's lines, as read_version reads it
    assert any(r.tags for r in rows) and any(r.excluded for r in rows) and any(not r.text.isascii() for r in rows)
    assert any(r.record == {} for r in rows) and any(r.id.endswith("-2") for r in rows)


@pytest.mark.parametrize("seed", range(5))
def test_the_diff_of_canonical_files_is_the_diff_of_their_parsed_rows(tmp_path, seed):
    rng = random.Random(seed)
    first = generated_version(rng, 80)
    before, before_hash = stored(tmp_path, "v1", first)
    after, after_hash = stored(tmp_path, "v2", next_version(rng, first))
    fast = diff_canonical(
        read_canonical(before.read_bytes(), before_hash), read_canonical(after.read_bytes(), after_hash)
    )
    parsed = diff_rows(read_version(before, "jsonl"), read_version(after, "jsonl"))
    assert fast == parsed
    assert all(fast.counts.values()), fast.counts  # some of each: added, removed, changed, unchanged
    assert {f for c in fast.changed for f in c.fields} >= {"answer", "tags", "excluded", "checks"}
    empty = diff_canonical(CanonicalFile.empty(), read_canonical(after.read_bytes()))
    assert empty == diff_rows([], read_version(after, "jsonl"))  # a first version: every row added


def test_files_not_written_canonical_are_not_read_as_such(tmp_path):
    path, recorded = stored(tmp_path, "v1", ROWS)
    data = path.read_bytes()
    assert read_canonical(data, recorded) is not None and read_canonical(data, "0" * 64) is None
    first = data.split(b"\n")[0] + b"\n"
    assert read_canonical(first * 2) is None  # an id twice
    assert read_canonical(data[:-1]) is None  # no last newline
    assert read_canonical(jsonl(ROWS).encode()) is None  # a user's file: no ids
    assert read_canonical(json.dumps({"id": "a", "question": "q?", "answer": "a."}).encode() + b"\n") is None
    assert read_canonical(b'{"id":"bad id!","question":"q?"}\n') is None  # not a usable id
    # a repeated 64-character id numbered past ROW_ID's length: parsed (read_version gives it another id)
    assert read_canonical(canonical_jsonl(list(rows_of([(1, {"id": "x" * 64, **ROWS[0]})] * 2)))) is None
    # the right shape, but not canonical (keys unsorted): its bytes hash otherwise than its rows
    unsorted = write(tmp_path, "u.jsonl", '{"id":"a","question":"q?","answer":"a."}\n')
    recorded = content_hash(read_version(unsorted, "jsonl"))
    assert read_canonical(unsorted.read_bytes()).content_hash != recorded
    assert read_canonical(unsorted.read_bytes(), recorded) is None
    assert read_canonical(b"", content_hash([])) == CanonicalFile.empty()


def test_a_row_ids_characters_need_no_json_escaping_so_its_id_is_sliced_from_its_line():
    allowed = string.ascii_letters + string.digits + "._:-"
    assert all(orjson.dumps(c) == f'"{c}"'.encode() for c in allowed)
    assert not ROW_ID.fullmatch('a"b') and not ROW_ID.fullmatch("a\\b") and not ROW_ID.fullmatch("aé")
    rows = [Row.of("Az09._:-", {}, 1), Row.of("x" * 64, {"question": "q?", "answer": 'a "quoted" \\ b'}, 2)]
    data = canonical_jsonl(rows)
    assert data.startswith(b'{"id":"Az09._:-"}\n')
    canonical = read_canonical(data, content_hash(rows))
    assert canonical is not None and canonical.rows() == rows
