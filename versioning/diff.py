"""A row-by-row diff of two versions, by row id: added, removed, and changed (with the fields that changed).

`diff_rows` diffs parsed rows; `diff_canonical` diffs two files written canonical without parsing the rows they share
(the rows of equal bytes), and gives the same diff."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from versioning.rows import CanonicalFile, Row


@dataclass
class ChangedRow:
    id: str
    fields: list[str]
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass
class RowDiff:
    added: list[Row] = field(default_factory=list)
    removed: list[Row] = field(default_factory=list)
    changed: list[ChangedRow] = field(default_factory=list)
    unchanged: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "unchanged": self.unchanged,
        }


def diff_rows(before: list[Row], after: list[Row]) -> RowDiff:
    """What changed from `before` to `after`: rows in the order of the version that holds them."""
    old = {row.id: row for row in before}
    new_ids = {row.id for row in after}
    diff = RowDiff(removed=[row for row in before if row.id not in new_ids])
    for row in after:
        previous = old.get(row.id)
        if previous is None:
            diff.added.append(row)
        elif previous.text == row.text:
            diff.unchanged += 1
        else:
            diff.changed.append(changed_row(previous, row))
    return diff


def changed_row(previous: Row, row: Row) -> ChangedRow:
    fields = sorted(
        k for k in previous.record.keys() | row.record.keys() if previous.record.get(k) != row.record.get(k)
    )
    return ChangedRow(row.id, fields, previous.record, row.record)


def diff_canonical(before: CanonicalFile, after: CanonicalFile) -> RowDiff:
    """`diff_rows` of two files' rows, parsing only the rows it shows: a row whose line is in both files unchanged
    is only counted."""
    old, new = before.by_id, after.by_id
    came = {row_id for row_id, body in new.items() if old.get(row_id) != body}  # added or changed
    diff = RowDiff(unchanged=len(new) - len(came))
    for line, row_id in _in_file_order(before.ids, old.keys() - new.keys()):
        diff.removed.append(before.row(row_id, line))
    for line, row_id in _in_file_order(after.ids, came):
        if row_id in old:
            diff.changed.append(changed_row(before.row(row_id, 0), after.row(row_id, line)))
        else:
            diff.added.append(after.row(row_id, line))
    return diff


def _in_file_order(ids: list[bytes], wanted: set[bytes]) -> list[tuple[int, bytes]]:
    """(line, id) of the wanted ids, in file order (the line counted from 1)."""
    return [(line, row_id) for line, row_id in enumerate(ids, start=1) if row_id in wanted] if wanted else []
