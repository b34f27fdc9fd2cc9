"""A version's rows in the common formats, and each row as a reviewer reads it (checks derived where it has none)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from facts.derive import common_terms, derive_checks
from ml.examples import record_to_pair
from schemas.checks import dump_checks
from versioning.rows import ID_FIELD, Row

FORMATS = ("jsonl", "alpaca", "chat")


@dataclass
class ReviewedRow:
    """A row as a reviewer reads it: its question and answer, and the checks that judge an answer to it (its own, or
    derived from its answer and marked derived)."""

    id: str
    question: str
    answer: str
    checks: list[dict[str, Any]]
    tags: list[str] = field(default_factory=list)
    excluded: bool = False
    line: int = 0


def reviewed(rows: list[Row]) -> list[ReviewedRow]:
    """Every row that holds a question and an answer, as read for review (rows of no known format are skipped)."""
    pairs: list[tuple[Row, str, str]] = []
    for row in rows:
        try:
            question, answer = record_to_pair(row.record)
        except ValueError:
            continue
        pairs.append((row, question, answer))
    common = common_terms([answer for _, _, answer in pairs])
    return [
        ReviewedRow(
            id=row.id,
            question=question,
            answer=answer,
            checks=row.record.get("checks") or dump_checks(derive_checks(question, answer, common)),
            tags=row.tags,
            excluded=row.excluded,
            line=row.line,
        )
        for row, question, answer in pairs
    ]


def export_lines(rows: list[Row], file_format: str) -> Iterator[str]:
    """JSON lines of the rows: `jsonl` is the version itself (every row, annotations included); `alpaca` and `chat` are
    ready to train on elsewhere, so excluded rows are left out."""
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; expected one of {', '.join(FORMATS)}")
    for row in rows:
        if file_format == "jsonl":
            yield row.canonical() + "\n"
            continue
        if row.excluded:
            continue
        try:
            question, answer = record_to_pair(row.record)
        except ValueError:
            continue
        extra: dict[str, Any] = {ID_FIELD: row.id}
        if row.record.get("checks"):
            extra["checks"] = row.record["checks"]
        if file_format == "alpaca":
            record = {"instruction": row.record.get("instruction", question), "input": "", "output": answer}
            if "instruction" in row.record:
                record["input"] = row.record.get("input") or ""
        elif isinstance(row.record.get("messages"), list):
            record = {"messages": row.record["messages"]}
        else:
            record = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        yield json.dumps({**extra, **record}, ensure_ascii=False) + "\n"
