"""Annotations: a user's edits to the rows of a version (a corrected answer or checks, tags added or removed, a row
excluded from training or brought back). Applying them gives the rows of the next version; an edit that names no row
of the version, holds bad checks or changes nothing is refused with the row and the field at fault, and nothing is
applied."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from schemas.checks import dump_checks, parse_checks
from versioning.rows import EXCLUDED_FIELD, TAGS_FIELD, Row

# where each record format keeps its answer (the chat format: the last assistant message)
ANSWER_FIELDS = ("answer", "output", "response", "completion")


class AnnotationError(ValueError):
    """An edit that cannot be applied; the message names the row and the field."""


@dataclass
class RowEdit:
    row_id: str
    answer: str | None = None
    checks: list[dict[str, Any]] | None = None
    add_tags: list[str] = field(default_factory=list)
    remove_tags: list[str] = field(default_factory=list)
    excluded: bool | None = None


def apply_edits(rows: list[Row], edits: list[RowEdit]) -> list[Row]:
    """The rows with every edit applied, in the same order; AnnotationError (and nothing applied) on a bad edit."""
    by_id = {row.id: i for i, row in enumerate(rows)}
    out = list(rows)
    for edit in edits:
        if edit.row_id not in by_id:
            raise AnnotationError(f"row {edit.row_id!r} is not in this version")
        index = by_id[edit.row_id]
        record = copy.deepcopy(out[index].record)
        if edit.answer is not None:
            set_answer(record, edit.answer, edit.row_id)
        if edit.checks is not None:
            try:
                checks = parse_checks(edit.checks)
            except ValueError as exc:
                raise AnnotationError(f"row {edit.row_id!r}: {exc}") from exc
            for check in checks:  # a check a person wrote or kept is reviewed
                check.derived = False
            if checks:
                record["checks"] = dump_checks(checks)
            else:
                record.pop("checks", None)
        tags = (set(out[index].tags) | set(edit.add_tags)) - set(edit.remove_tags)
        if tags:
            record[TAGS_FIELD] = sorted(tags)
        else:
            record.pop(TAGS_FIELD, None)
        if edit.excluded is True:
            record[EXCLUDED_FIELD] = True
        elif edit.excluded is False:
            record.pop(EXCLUDED_FIELD, None)
        if record == out[index].record:
            raise AnnotationError(f"the edit of row {edit.row_id!r} changes nothing")
        out[index] = Row.of(edit.row_id, record, out[index].line)
    return out


def set_answer(record: dict[str, Any], answer: str, row_id: str) -> None:
    if not answer.strip():
        raise AnnotationError(f"row {row_id!r}: 'answer' is empty")
    messages = record.get("messages")
    if isinstance(messages, list):
        assistants = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
        if assistants:
            assistants[-1]["content"] = answer
            return
    for name in ANSWER_FIELDS:
        if name in record:
            record[name] = answer
            return
    raise AnnotationError(f"row {row_id!r} has no answer field to correct")
