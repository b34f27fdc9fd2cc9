"""Regression tests for bugs found in review."""

from __future__ import annotations

import pytest

from ml.examples import DatasetFormatError, Example, inspect_file
from ml.metrics import bleu
from ml.optimizer import split_examples
from storage import keys
from storage.object_store import LocalObjectStore, ObjectNotFound, get_file, put_bytes


@pytest.mark.parametrize(
    "suffix,content",
    [("csv", "question,answer\ncaf\xe9?,yes\n"), ("json", '[{"question": "caf\xe9?", "answer": "yes"}]')],
)
def test_non_utf8_csv_and_json_are_format_errors(tmp_path, suffix, content):
    path = tmp_path / f"data.{suffix}"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(DatasetFormatError, match="not valid UTF-8"):
        inspect_file(path, suffix)


def test_a_split_that_would_leave_a_part_too_small_is_refused():
    examples = [
        Example(
            question=f"Classify the sentiment of this product review as positive or negative: review {i}",
            answer="positive",
        )
        for i in range(14)
    ]
    with pytest.raises(ValueError, match="fewer than 4 examples"):
        split_examples(examples)


def test_storage_ids_with_a_trailing_newline_are_rejected():
    with pytest.raises(ValueError):
        keys.model_prefix("abc\n", 1)


def test_get_file_of_a_missing_key_leaves_no_partial_file(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    with pytest.raises(ObjectNotFound):
        get_file(store, "missing/key", tmp_path / "out" / "file")
    assert not list((tmp_path / "out").glob("*"))


def test_deleting_the_empty_prefix_empties_the_store_and_keeps_working(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    put_bytes(store, "a/b", b"1")
    assert store.delete_prefix("") == 1
    assert store.list("") == []
    put_bytes(store, "c", b"2")
    assert store.list("") == ["c"]


def test_bleu_never_exceeds_one():
    assert bleu("The web console listens on port 7410.", "The web console listens on port 7410.") == 1.0
