"""Canonical rows: every record of a dataset file, in any supported format, as one JSON object with a stable `id`.

A row's id is the record's own `id` when it has a usable one, otherwise a hash of its normalised question, so a row
whose answer or checks are corrected keeps its id (and a diff shows it as changed, not as removed and added). Rows
that share a question get `-2`, `-3`… in file order. A version's content hash is the sha256 of its canonical lines,
in order: two uploads of the same rows hash alike whatever their format's key order or whitespace.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ml.examples import is_excluded, read_rows, record_to_pair

ROW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# fields a version adds to a record: the row's id, and the annotations
ID_FIELD, TAGS_FIELD, EXCLUDED_FIELD = "id", "tags", "excluded"


class Row(NamedTuple):
    """One record of a version: its id, the record (without `id`), its line in the file, and the record's canonical
    JSON (keys sorted, no spaces, UTF-8 kept), made once: the content hash and the diff compare it."""

    id: str
    record: dict[str, Any]
    line: int
    text: bytes

    @classmethod
    def of(cls, row_id: str, record: dict[str, Any], line: int) -> Row:
        return cls(row_id, record, line, orjson.dumps(record, option=orjson.OPT_SORT_KEYS))

    @property
    def excluded(self) -> bool:
        return self.record.get(EXCLUDED_FIELD) is True

    @property
    def tags(self) -> list[str]:
        tags = self.record.get(TAGS_FIELD)
        return list(tags) if isinstance(tags, list) else []

    def canonical(self) -> str:
        """The row as one JSON line of a version's file: `id` first, then the record's keys sorted."""
        head = '{"id":' + orjson.dumps(self.id).decode()
        body = self.text.decode("utf-8")
        return head + ("," + body[1:] if len(body) > 2 else "}")


def canonical_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its id, its checks as a list where a CSV cell holds them as JSON text (as written: uploads
    validate them), its annotation fields normalised. A record with none of these to change is returned as it is (the
    common case, kept fast)."""
    if (
        ID_FIELD not in record
        and TAGS_FIELD not in record
        and EXCLUDED_FIELD not in record
        and type(record.get("checks")) is not str
    ):
        return record
    out = {k: v for k, v in record.items() if k != ID_FIELD}
    if out.get("checks") in (None, ""):
        out.pop("checks", None)
    elif isinstance(out["checks"], str):  # a CSV cell: the JSON list it holds (uploads refuse bad checks)
        with contextlib.suppress(orjson.JSONDecodeError):
            out["checks"] = orjson.loads(out["checks"])
    if is_excluded(out):
        out[EXCLUDED_FIELD] = True
    else:
        out.pop(EXCLUDED_FIELD, None)
    tags = out.get(TAGS_FIELD)
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",")]
    if isinstance(tags, list) and (clean := sorted({str(t) for t in tags if str(t).strip()})):
        out[TAGS_FIELD] = clean
    else:
        out.pop(TAGS_FIELD, None)
    return out


def natural_id(record: dict[str, Any]) -> str:
    """The id a record is known by when it names none: its normalised question's hash (its whole text's, when it has
    no question). Normalised as `ml.examples.normalize_text` does, case-folded."""
    question = record.get("question")
    if type(question) is not str or "messages" in record or "instruction" in record or "answer" not in record:
        try:
            question = record_to_pair(record)[0]
        except ValueError:
            question = None
    if question is None:
        basis = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    else:
        if not question.isascii():
            question = unicodedata.normalize("NFKC", question)
        basis = " ".join(question.split()).casefold().encode()
    return "q" + hashlib.sha256(basis).hexdigest()[:12]


def rows_of(records: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[Row]:
    """Canonical rows of (line, record) pairs, ids made unique in order."""
    seen: dict[str, int] = {}
    for line, record in records:
        own = record.get(ID_FIELD)
        base = str(own) if isinstance(own, (str, int)) and ROW_ID.fullmatch(str(own)) else natural_id(record)
        count = seen[base] = seen.get(base, 0) + 1
        yield Row.of(base if count == 1 else f"{base}-{count}", canonical_record(record), line)


def read_version(path: Path, file_format: str) -> list[Row]:
    """The canonical rows of a stored version's file (unreadable lines are skipped: uploads refuse them). The cyclic
    garbage collector is paused while the rows are built: they hold no cycles, and its passes over a growing list of
    dicts would otherwise take a third of the time."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        if file_format == "jsonl":
            return list(rows_of(_jsonl_records(path)))
        return list(rows_of((raw.line, raw.record) for raw in read_rows(path, file_format) if raw.record is not None))
    finally:
        if gc_was_on:
            gc.enable()


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, record) of each JSON object line, parsed with orjson (what `read_rows` does, faster)."""
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    for number, line in enumerate(lines, start=1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:  # an empty line, or one an upload would have refused
            continue
        if type(record) is dict:
            yield number, record


def content_hash(rows: Iterable[Row]) -> str:
    """sha256 over each row's id and canonical record, in order (one line each: the id, a tab, the record)."""
    digest = hashlib.sha256()
    update = digest.update
    for row in rows:
        update(row.id.encode())
        update(b"\t")
        update(row.text)
        update(b"\n")
    return digest.hexdigest()


def canonical_jsonl(rows: Iterable[Row]) -> bytes:
    """A version's file as written by the platform: one canonical line per row."""
    return "".join(row.canonical() + "\n" for row in rows).encode("utf-8")
