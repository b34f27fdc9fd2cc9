"""Reading instruction datasets: formats, record mapping, syntax errors with line numbers, normalization, ids."""

from __future__ import annotations

import hashlib
import json

import pytest

from ml.examples import (
    DatasetFormatError,
    Example,
    detect_format,
    example_id,
    example_key,
    examples_from_jsonl,
    examples_to_jsonl,
    inspect_file,
    normalize_text,
    read_rows,
    record_to_pair,
)


def pairs(path, file_format):
    return [record_to_pair(row.record) for row in read_rows(path, file_format)]


# ---------------------------------------------------------------- reading each format


def test_jsonl_question_answer(write_file):
    path = write_file("d.jsonl", '{"question": "Q1", "answer": "A1"}\n\n{"question": "Q2", "answer": "A2"}\n')
    rows = list(read_rows(path, "jsonl"))
    assert [r.line for r in rows] == [1, 3]  # the blank line is skipped but still counted
    assert all(r.error is None for r in rows)
    assert [record_to_pair(r.record) for r in rows] == [("Q1", "A1"), ("Q2", "A2")]


def test_json_array(write_file):
    data = [{"question": "Q1", "answer": "A1"}, {"prompt": "P2", "response": "R2"}]
    path = write_file("d.json", json.dumps(data, indent=2))
    rows = list(read_rows(path, "json"))
    assert [r.line for r in rows] == [1, 2]  # index of the record in the array
    assert [record_to_pair(r.record) for r in rows] == [("Q1", "A1"), ("P2", "R2")]


def test_json_data_object(write_file):
    path = write_file("d.json", json.dumps({"data": [{"question": "Q", "answer": "A"}], "meta": {"v": 1}}))
    assert pairs(path, "json") == [("Q", "A")]


def test_json_non_list_is_an_error_row(write_file):
    path = write_file("d.json", json.dumps({"question": "Q", "answer": "A"}))
    rows = list(read_rows(path, "json"))
    assert len(rows) == 1
    assert rows[0].record is None and "array of objects" in rows[0].error


def test_json_array_with_non_object(write_file):
    path = write_file("d.json", json.dumps([{"question": "Q", "answer": "A"}, "oops"]))
    rows = list(read_rows(path, "json"))
    assert rows[1].line == 2 and rows[1].record is None and rows[1].error == "not a JSON object"


def test_invalid_json_reports_its_line(write_file):
    path = write_file("d.json", '[\n  {"question": "Q", "answer": "A"},\n  {"question": "Q2" "answer": "A2"}\n]\n')
    rows = list(read_rows(path, "json"))
    assert len(rows) == 1
    assert rows[0].line == 3
    assert rows[0].error.startswith("invalid JSON")


def test_csv_question_answer(write_file):
    path = write_file("d.csv", 'question,answer\nWhat is X?,"X is, in short, Y."\n"Multi\nline?",Yes\n')
    rows = list(read_rows(path, "csv"))
    assert [record_to_pair(r.record) for r in rows] == [("What is X?", "X is, in short, Y."), ("Multi\nline?", "Yes")]
    assert rows[0].line == 2  # the header is line 1


def test_csv_instruction_input_output(write_file):
    path = write_file("d.csv", "instruction,input,output\nTranslate to French,cat,chat\nSay hi,,hi\n")
    assert pairs(path, "csv") == [("Translate to French\n\ncat", "chat"), ("Say hi", "hi")]


def test_csv_too_many_cells_is_an_error_row(write_file):
    path = write_file("d.csv", "question,answer\nQ1,A1\nQ2,A2,extra\nQ3,A3\n")
    rows = list(read_rows(path, "csv"))
    assert [(r.line, r.error) for r in rows] == [(2, None), (3, "more cells than header columns"), (4, None)]


def test_csv_missing_cell_gives_empty_text(write_file):
    path = write_file("d.csv", "question,answer\nQ1\n")
    assert pairs(path, "csv") == [("Q1", "")]


def test_unsupported_format_in_read_rows(write_file):
    path = write_file("d.txt", "hello")
    with pytest.raises(DatasetFormatError, match="unsupported format"):
        list(read_rows(path, "txt"))


# ---------------------------------------------------------------- record_to_pair


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"question": "Q", "answer": "A"}, ("Q", "A")),
        ({"instruction": "Summarize", "input": "Long text", "output": "Short"}, ("Summarize\n\nLong text", "Short")),
        ({"instruction": "Summarize", "output": "Short"}, ("Summarize", "Short")),
        ({"instruction": "Summarize", "input": "   ", "output": "Short"}, ("Summarize", "Short")),
        ({"instruction": "Summarize", "input": None, "output": "Short"}, ("Summarize", "Short")),
        ({"prompt": "P", "response": "R"}, ("P", "R")),
        ({"prompt": "P", "completion": "C"}, ("P", "C")),
        ({"question": 42, "answer": 4.5}, ("42", "4.5")),
        ({"question": "Q", "answer": None}, ("Q", "")),
        (
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "one"},
                    {"role": "user", "content": "second"},
                    {"role": "assistant", "content": "two"},
                ]
            },
            ("second", "two"),
        ),
    ],
)
def test_record_to_pair(record, expected):
    assert record_to_pair(record) == expected


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"q": "Q", "a": "A"}, "no known fields"),
        ({"question": "Q"}, "no known fields"),
        ({"messages": "hi"}, "list of"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "at least one user and one assistant"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "at least one user and one assistant"),
        ({"question": ["a"], "answer": "A"}, "must be text"),
        ({"question": "Q", "answer": {"x": 1}}, "must be text"),
    ],
)
def test_record_to_pair_rejects(record, message):
    with pytest.raises(ValueError, match=message):
        record_to_pair(record)


# ---------------------------------------------------------------- syntax errors and inspection


def test_invalid_jsonl_lines_are_reported_with_line_numbers(write_file):
    path = write_file(
        "d.jsonl",
        '{"question": "Q1", "answer": "A1"}\n{"question": "Q2", "answer": \n'
        '{"question": "Q3", "answer": "A3"}\n[1, 2]\n',
    )
    rows = list(read_rows(path, "jsonl"))
    assert [(r.line, r.error is None) for r in rows] == [(1, True), (2, False), (3, True), (4, False)]
    assert rows[1].error.startswith("invalid JSON") and "column" in rows[1].error
    assert rows[3].error == "not a JSON object"


def test_inspect_file_counts_rows(write_file):
    lines = [{"question": "Q1", "answer": "A1"}, {"instruction": "I", "output": "O"}, {"foo": "bar"}]
    path = write_file("d.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    inspection = inspect_file(path, "jsonl")
    assert (inspection.rows, inspection.unrecognized, inspection.syntax_errors) == (3, 1, [])


def test_inspect_file_raises_with_line_numbers(write_file):
    path = write_file(
        "d.jsonl", '{"question": "Q1", "answer": "A1"}\nnot json\n{"question": "Q3", "answer": "A3"}\n{broken\n'
    )
    with pytest.raises(DatasetFormatError) as info:
        inspect_file(path, "jsonl")
    assert [line for line, _ in info.value.errors] == [2, 4]
    assert "not valid JSONL" in str(info.value)
    assert "line 2:" in str(info.value) and "line 4:" in str(info.value)


def test_inspect_file_stops_after_max_errors(write_file):
    path = write_file("d.jsonl", "x\n" * 20)
    with pytest.raises(DatasetFormatError) as info:
        inspect_file(path, "jsonl", max_errors=3)
    assert [line for line, _ in info.value.errors] == [1, 2, 3]


def test_inspect_file_csv_error_line(write_file):
    path = write_file("d.csv", "question,answer\nQ1,A1\nQ2,A2,A3\n")
    with pytest.raises(DatasetFormatError) as info:
        inspect_file(path, "csv")
    assert info.value.errors == [(3, "more cells than header columns")]


@pytest.mark.parametrize(
    ("name", "content", "file_format"),
    [
        ("d.jsonl", '{"q": "Q", "a": "A"}\n{"foo": 1}\n', "jsonl"),
        ("d.jsonl", "\n\n", "jsonl"),
        ("d.json", "[]", "json"),
        ("d.csv", "title,body\nx,y\n", "csv"),
        ("d.csv", "question,answer\n", "csv"),
    ],
)
def test_inspect_file_no_usable_rows(write_file, name, content, file_format):
    with pytest.raises(DatasetFormatError, match="no usable rows"):
        inspect_file(write_file(name, content), file_format)


def test_inspect_file_too_many_rows(write_file):
    path = write_file("d.jsonl", '{"question": "Q", "answer": "A"}\n' * 5)
    assert inspect_file(path, "jsonl", max_rows=5).rows == 5
    with pytest.raises(DatasetFormatError, match="too many rows"):
        inspect_file(path, "jsonl", max_rows=4)


def test_non_utf8_jsonl_is_a_format_error(write_file):
    path = write_file("d.jsonl", '{"question": "Caf\xe9?", "answer": "Oui"}\n'.encode("latin-1"))
    with pytest.raises(DatasetFormatError, match="not valid UTF-8"):
        inspect_file(path, "jsonl")
    with pytest.raises(DatasetFormatError, match="not valid UTF-8"):
        list(read_rows(path, "jsonl"))


def test_utf8_content_is_read_intact(write_file):
    path = write_file("d.csv", "question,answer\nCafé ou thé ?,Les deux — 日本語\n")
    assert pairs(path, "csv") == [("Café ou thé ?", "Les deux — 日本語")]


# ---------------------------------------------------------------- formats, normalization, ids


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("data.jsonl", "jsonl"),
        ("DATA.JSON", "json"),
        ("my.dataset.csv", "csv"),
        ("/tmp/x/y.JsonL", "jsonl"),
    ],
)
def test_detect_format(filename, expected):
    assert detect_format(filename) == expected


@pytest.mark.parametrize("filename", ["data.txt", "data", "data.parquet", "", "csv"])
def test_detect_format_rejects(filename):
    with pytest.raises(DatasetFormatError, match="unsupported file type"):
        detect_format(filename)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  hello\tworld  ", "hello world"),
        ("a\u00a0b", "a b"),  # no-break space
        ("line one\n\n  line two", "line one line two"),
        ("\uff26\uff45\uff52\uff52\uff4f", "Ferro"),  # full-width letters (NFKC)
        ("\ufb01ne", "fine"),  # ligature (NFKC)
        ("x\u2003\u2009y", "x y"),  # em space + thin space
        ("", ""),
        (" \t\n", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_example_key_is_case_folded_and_normalized():
    assert example_key("What IS  X?", " Y\t") == "what is x? || y"


def test_example_id_is_stable_and_insensitive_to_case_and_whitespace():
    a = example_id("How do I reset my password?", "Use the settings page.")
    assert a == example_id("  how do I RESET my\tpassword? ", "use the\u00a0settings page.  ")
    assert len(a) == 16 and all(c in "0123456789abcdef" for c in a)
    assert a != example_id("How do I reset my password?", "Use the settings page!")
    assert a != example_id("Use the settings page.", "How do I reset my password?")
    # a hard-coded value catches an accidental change of the hash recipe (ids are stored in reports)
    assert example_id("Q", " A ") == hashlib.sha256(b"q || a").hexdigest()[:16]


def test_example_gets_its_id_and_round_trips():
    e = Example(question="Q", answer="A", weight=2, lineage=[{"bad_case_id": "b"}])
    assert e.id == example_id("Q", "A")
    assert Example(question="Q", answer="A", id="custom").id == "custom"
    again = examples_from_jsonl(examples_to_jsonl([e, Example(question="Ünï", answer="ç")]))
    assert again[0] == e
    assert again[1].question == "Ünï"


# ---------------------------------------------------------------- fact checks in rows


def test_rows_of_every_format_carry_their_checks_and_bad_ones_are_refused_naming_the_row_and_field(write_file):
    from ml.optimizer import clean_dataset

    polar = [{"type": "polarity", "value": "no"}]
    rows = [
        {"question": "Does it run on Windows?", "answer": "No, Linux only.", "checks": polar},
        {
            "instruction": "Which port serves metrics?",
            "output": "Port 7412.",
            "checks": [{"type": "number", "value": 7412}],
        },
        {
            "messages": [
                {"role": "user", "content": "Who makes it?"},
                {"role": "assistant", "content": "Ferro Systems in Tallinn."},
            ],
            "checks": [{"type": "contains_any", "values": ["Ferro Systems"]}],
        },
        {"question": "How much RAM?", "answer": "At least 4 GB."},
    ]
    path = write_file("d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert inspect_file(path, "jsonl").rows == 4
    cleaned = clean_dataset(path, "jsonl")
    assert [e.checks for e in cleaned.examples[:3]] == [
        [{"derived": False, "type": "polarity", "value": "no"}],
        [{"derived": False, "type": "number", "value": 7412.0, "unit": None, "tolerance": 0.0}],
        [{"derived": False, "type": "contains_any", "values": ["Ferro Systems"]}],
    ]
    # a row without checks gets them derived from its answer, marked as such
    assert cleaned.examples[3].checks == [
        {"derived": True, "type": "number", "value": 4.0, "unit": "gb", "tolerance": 0.0}
    ]
    assert cleaned.derived_checks == 1

    csv_path = write_file(
        "d.csv", 'question,answer,checks\nQ1?,Yes,"[{""type"": ""polarity"", ""value"": ""yes""}]"\nQ2?,Port 7410.,\n'
    )
    assert [e.checks[0]["type"] for e in clean_dataset(csv_path, "csv").examples] == ["polarity", "number"]

    bad = rows[:1] + [
        {"question": "Q?", "answer": "A", "checks": [{"type": "polarity", "value": "maybe"}]},
        {"question": "Q2?", "answer": "A", "checks": "yes"},
    ]
    with pytest.raises(DatasetFormatError) as info:
        inspect_file(write_file("bad.jsonl", "".join(json.dumps(r) + "\n" for r in bad)), "jsonl")
    assert [line for line, _ in info.value.errors] == [2, 3]
    assert "line 2: 'checks.0.polarity.value'" in str(info.value) and "line 3: 'checks' must be a list" in str(
        info.value
    )
