"""A row-by-row diff of two versions, by row id: added, removed, and changed (with the fields that changed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from versioning.rows import Row


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
            fields = sorted(
                k for k in previous.record.keys() | row.record.keys() if previous.record.get(k) != row.record.get(k)
            )
            diff.changed.append(ChangedRow(row.id, fields, previous.record, row.record))
    return diff
