"""Canonical rows: every record of a dataset file, in any supported format, as one JSON object with a stable `id`.

A row's id is the record's own `id` when it has a usable one, otherwise a hash of its normalised question, so a row
whose answer or checks are corrected keeps its id (and a diff shows it as changed, not as removed and added). Rows
that share a question get `-2`, `-3`… in file order. A version's content hash is the sha256 of its canonical lines,
in order: two uploads of the same rows hash alike whatever their format's key order or whitespace.

The platform stores a version's file as its canonical lines (`canonical_jsonl`). Such a file is read without parsing
its rows (`read_canonical`): a line's id is sliced from its head (`{"id":"<id>",`: ids match `ROW_ID`, so they need no
JSON escaping), two rows are equal when their lines' bytes are, and the content hash is made from the lines' bytes.
Only the rows a diff shows are parsed (`versioning.diff.diff_canonical`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


def with_added(rows: list[Row], records: Iterable[dict[str, Any]]) -> list[Row]:
    """`rows` as they are, then a row for each of `records`, with an id none of the rows has (its natural id, or
    that id with a count)."""
    taken = {row.id for row in rows}
    out = list(rows)
    for record in records:
        base = natural_id(record)
        row_id, count = base, 1
        while row_id in taken:
            count += 1
            row_id = f"{base}-{count}"
        taken.add(row_id)
        out.append(Row.of(row_id, canonical_record(record), len(out) + 1))
    return out


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


# a canonical line's head: `{"id":"<id>"`, then the comma before the record's first key (taken), or the closing brace
# of an empty record (left). In the file with a newline put before its first line, every line starts with a newline.
_CANONICAL_HEAD = re.compile(rb'\n\{"id":"(' + ROW_ID.pattern.encode() + rb')"(?:,|(?=\}))')


@dataclass(frozen=True)
class CanonicalFile:
    """A version's file written canonical, read without parsing its rows: each row's id and its canonical record's
    text without the opening brace (`Row.text[1:]`), in file order; `by_id` maps an id to that text."""

    ids: list[bytes]
    bodies: list[bytes]
    by_id: dict[bytes, bytes]
    content_hash: str

    def row(self, row_id: bytes, line: int) -> Row:
        """The row parsed (its record is its canonical text's)."""
        text = b"{" + self.by_id[row_id]
        return Row(row_id.decode("ascii"), orjson.loads(text), line, text)

    def rows(self) -> list[Row]:
        """Every row parsed."""
        return [self.row(row_id, line) for line, row_id in enumerate(self.ids, start=1)]

    @classmethod
    def empty(cls) -> CanonicalFile:
        """The file of no rows (the empty dataset before a first version)."""
        return cls([], [], {}, hashlib.sha256().hexdigest())


def read_canonical(data: bytes, recorded_hash: str | None = None) -> CanonicalFile | None:
    """The file's rows, unparsed, when it is shaped as a version's file the platform wrote (`canonical_jsonl`: each
    line starts with a usable id, no id twice); None when it is not. Its content hash is made from the lines' bytes
    and equals `content_hash` of the rows only when each line is its row's id and canonical text: given the hash the
    version recorded (`recorded_hash`), a file whose hash differs is None too (one a workflow wrote, or one stored
    before uploads were stored canonical: `read_version` parses those)."""
    if data and not (data.startswith(b'{"id":"') and data.endswith(b"\n")):
        return None
    # ["", id, body, id, body, ...]: a body is the rest of its line (the record's canonical text after its brace)
    parts = _CANONICAL_HEAD.split(b"".join((b"\n", memoryview(data)[:-1]))) if data else [b""]
    ids, bodies = parts[1::2], parts[2::2]
    by_id = dict(zip(ids, bodies, strict=True))
    if len(ids) != data.count(b"\n") or len(by_id) != len(ids):
        return None
    # what `content_hash` hashes: each row's id, a tab, its canonical text ("{" and the body), a newline
    hashed = [b"", b"\t{", b"", b"\n"] * len(ids)
    hashed[0::4], hashed[2::4] = ids, bodies
    digest = hashlib.sha256(b"".join(hashed)).hexdigest()
    if recorded_hash is not None and digest != recorded_hash:
        return None
    return CanonicalFile(ids, bodies, by_id, digest)
