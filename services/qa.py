"""Question answering history: every completion the serving process answered, the feedback on it, and the
production feedback loop: rated and corrected answers become a dataset, with lineage to their history entries,
ready for the next continuous task (whose gate then decides whether the re-trained model replaces production).

Every lookup is inside one organization (`org_id`): another tenant's entry is simply not found.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import Invalid
from core.settings import Settings
from db.models import Dataset, QAEntry
from ml.examples import record_history
from services.dataset_versions import upload_version
from services.datasets import get_dataset, upload_dataset
from services.tenancy import get_owned, list_owned
from storage.object_store import ObjectStore

UP, DOWN = "up", "down"


class CompletionStatus(StrEnum):
    """How a completion ended: every one is recorded, whatever its end."""

    COMPLETED = "completed"
    FAILED = "failed"  # the engine failed, or the request was refused once its model was known
    CANCELLED = "cancelled"  # the client left before the answer was finished


@dataclass(frozen=True)
class HistoryFilter:
    model: str | None = None  # the exact version (name@3) or a registered model's name (every version of it)
    conversation_id: str | None = None
    rating: str | None = None  # up | down | none (not rated yet)
    status: str | None = None  # completed | failed | cancelled

    def clauses(self) -> list:
        clauses = []
        if self.model and "@" in self.model:  # one version
            clauses.append(QAEntry.model == self.model)
        elif self.model:  # every version of a registered model, or a base model
            clauses.append(QAEntry.model.like(f"{_escape(self.model)}@%", escape="\\") | (QAEntry.model == self.model))
        if self.conversation_id:
            clauses.append(QAEntry.conversation_id == self.conversation_id)
        if self.rating == "none":
            clauses.append(QAEntry.rating.is_(None))
        elif self.rating:
            clauses.append(QAEntry.rating == self.rating)
        if self.status:
            clauses.append(QAEntry.status == self.status)
        return clauses


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def record(session: Session, **fields: Any) -> QAEntry:
    """One completion into the history, whatever its status."""
    entry = QAEntry(**fields)
    session.add(entry)
    session.commit()
    return entry


def list_history(
    session: Session, org_id: str, where: HistoryFilter, limit: int, offset: int
) -> tuple[list[QAEntry], int]:
    return list_owned(session, QAEntry, org_id, limit, offset, *where.clauses())


def give_feedback(
    session: Session, org_id: str, entry_id: str, *, rating: str, corrected_answer: str | None, user_id: str | None
) -> QAEntry:
    """Rate an answer (again: the last rating counts), optionally with the answer it should have given."""
    entry = get_owned(session, QAEntry, org_id, entry_id, "history entry")
    entry.rating, entry.corrected_answer, entry.feedback_by, entry.feedback_at = (
        rating,
        corrected_answer,
        user_id,
        utcnow(),
    )
    session.commit()
    return entry


def question_of(entry: QAEntry) -> str:
    """The question an entry answered: its last user message."""
    return next((m["content"] for m in reversed(entry.messages) if m.get("role") == "user"), "")


def feedback_examples(entries: list[QAEntry]) -> list[dict]:
    """Training rows from feedback: a corrected answer (whatever the rating), or a completed answer rated up; an answer
    rated down without a correction teaches nothing, and one cut short (failed, cancelled) is not an answer to learn."""
    rows = []
    for entry in entries:
        whole = entry.status == CompletionStatus.COMPLETED
        answer = entry.corrected_answer or (entry.answer if entry.rating == UP and whole else None)
        question = question_of(entry)
        if answer and answer.strip() and question.strip():
            origin = {
                "qa_history_id": entry.id,
                "model": entry.model,
                "source": "corrected" if entry.corrected_answer else "rated_up",
            }
            earlier = record_history({"messages": entry.messages})
            if earlier:  # a conversation: a chat row, so that training supervises every assistant turn of it
                turns = [*earlier, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
                rows.append({"messages": turns, **origin})
            else:
                rows.append({"question": question, "answer": answer, **origin})
    return rows


def export_dataset(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    org_id: str,
    name: str | None,
    where: HistoryFilter,
    created_by: str | None,
    dataset_id: str | None = None,
) -> Dataset:
    """The rated and corrected answers matching `where`, as an ordinary dataset whose rows name their history
    entries; with `dataset_id`, as the next version of that dataset (corrections land as versions, with who and
    why)."""
    if dataset_id is None and not name:
        raise Invalid("name: a new dataset needs a name (or give dataset_id to add a version to one)")
    entries = list(
        session.scalars(
            select(QAEntry)
            .where(QAEntry.org_id == org_id, QAEntry.rating.is_not(None), *where.clauses())
            .order_by(QAEntry.created_at, QAEntry.id)
        )
    )
    rows = feedback_examples(entries)
    if not rows:
        raise Invalid(
            "no history entry matches the filter with a corrected answer or an answer rated up: rate some answers first"
        )
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    if dataset_id is not None:
        upload_version(
            session,
            store,
            settings,
            org_id=org_id,
            dataset_id=dataset_id,
            stream=io.BytesIO(data),
            filename="qa-feedback.jsonl",
            reason=f"QA history feedback: {len(rows)} rows from {len(entries)} matching entries",
            created_by=created_by,
        )
        dataset = get_dataset(session, org_id, dataset_id)
        previous = (dataset.generation_log or {}).get("qa_history_ids") or []
        dataset.generation_log = {
            **(dataset.generation_log or {}),
            "source": "qa_history",
            "qa_history_ids": sorted({*previous, *(row["qa_history_id"] for row in rows)}),
            "rows": len(rows),
        }
        session.commit()
        return dataset
    dataset = upload_dataset(
        session,
        store,
        settings,
        stream=io.BytesIO(data),
        filename="qa-feedback.jsonl",
        name=name or "qa feedback",
        domain=None,
        dataset_type="qa_feedback",
        org_id=org_id,
        created_by=created_by,
    )
    dataset.generation_log = {
        "source": "qa_history",
        "qa_history_ids": [row["qa_history_id"] for row in rows],
        "filter": {k: v for k, v in vars(where).items() if v},
        "entries_matched": len(entries),
        "rows": len(rows),
    }
    session.commit()
    return dataset
