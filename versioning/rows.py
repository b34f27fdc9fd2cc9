"""Canonical rows: every record of a dataset file, in any supported format, as one JSON object with a stable `id`.

A row's id is the record's own `id` when it has a usable one, otherwise a hash of its normalised question, so a row
whose answer or checks are corrected keeps its id (and a diff shows it as changed, not as removed and added). Rows
that share a question get `-2`, `-3`… in file order. A version's content hash is the sha256 of its canonical lines,
in order: two uploads of the same rows hash alike whatever their format's key order or whitespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.examples import is_excluded, normalize_text, read_rows, record_checks, record_to_pair

ROW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# fields a version adds to a record: the row's id, and the annotations
ID_FIELD, TAGS_FIELD, EXCLUDED_FIELD = "id", "tags", "excluded"


@dataclass(frozen=True)
class Row:
    """One record of a version: its id, the record (without `id`) and its line in the file."""

    id: str
    record: dict[str, Any]
    line: int

    @property
    def excluded(self) -> bool:
        return self.record.get(EXCLUDED_FIELD) is True

    @property
    def tags(self) -> list[str]:
        tags = self.record.get(TAGS_FIELD)
        return list(tags) if isinstance(tags, list) else []

    def canonical(self) -> str:
        """The row as one canonical JSON line (sorted keys, no spaces, UTF-8 kept)."""
        return json.dumps({ID_FIELD: self.id, **self.record}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its id, with its checks parsed (a CSV cell holds them as JSON text) and its annotation fields
    normalised."""
    out = {k: v for k, v in record.items() if k != ID_FIELD}
    if out.get("checks") in (None, ""):
        out.pop("checks", None)
    else:
        # an upload with bad checks is refused before it is stored; an old file keeps what it has
        with contextlib.suppress(ValueError):
            out["checks"] = record_checks(out)
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
    no question)."""
    try:
        basis = normalize_text(record_to_pair(record)[0]).casefold()
    except ValueError:
        basis = json.dumps(record, sort_keys=True, ensure_ascii=False)
    return "q" + hashlib.sha256(basis.encode()).hexdigest()[:12]


def rows_of(records: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[Row]:
    """Canonical rows of (line, record) pairs, ids made unique in order."""
    seen: dict[str, int] = {}
    for line, record in records:
        own = record.get(ID_FIELD)
        base = str(own) if isinstance(own, (str, int)) and ROW_ID.fullmatch(str(own)) else natural_id(record)
        seen[base] = seen.get(base, 0) + 1
        yield Row(base if seen[base] == 1 else f"{base}-{seen[base]}", canonical_record(record), line)


def read_version(path: Path, file_format: str) -> list[Row]:
    """The canonical rows of a stored version's file (unreadable lines are skipped: uploads refuse them)."""
    return list(rows_of((raw.line, raw.record) for raw in read_rows(path, file_format) if raw.record is not None))


def content_hash(rows: Iterable[Row]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.canonical().encode())
        digest.update(b"\n")
    return digest.hexdigest()


def canonical_jsonl(rows: Iterable[Row]) -> bytes:
    """A version's file as written by the platform: one canonical line per row."""
    return "".join(row.canonical() + "\n" for row in rows).encode("utf-8")
