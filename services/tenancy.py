"""Every resource belongs to one organization: looked up inside it, another tenant's id is simply not found."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound
from db.models import Dataset, Erasure, KnowledgeBase, MLTask, QAEntry
from db.session import page

Row = TypeVar(
    "Row", Dataset, Erasure, KnowledgeBase, MLTask, QAEntry
)  # the tables whose rows belong to one organization


def get_owned(session: Session, model: type[Row], org_id: str, resource_id: str, kind: str) -> Row:
    """The row of `model` with this id in the caller's organization, or NotFound naming the `kind`."""
    row = session.get(model, resource_id)
    if row is None or row.org_id != org_id:
        raise NotFound(f"{kind} {resource_id} not found")
    return row


def list_owned(
    session: Session, model: type[Row], org_id: str, limit: int, offset: int, *filters
) -> tuple[list[Row], int]:
    """One page of the organization's rows of `model` (newest first) that pass `filters`, and how many there are."""
    query = select(model).where(model.org_id == org_id, *filters)
    return page(session, query, model.created_at.desc(), model.id, limit=limit, offset=offset)
