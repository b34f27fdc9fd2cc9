from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Offset, SessionDep
from api.security import AuditRead
from schemas.api import AuditEntryPublic, AuditList
from services import identity as service

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", response_model=AuditList)
def list_audit(
    caller: AuditRead,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
    action: Annotated[str | None, Query(max_length=200, description="Only actions containing this text")] = None,
) -> AuditList:
    """Every mutation in the organization, newest first: who, what, which resource, when, from where."""
    rows, total = service.list_audit(session, caller, limit, offset, action)
    return AuditList(
        items=[AuditEntryPublic.model_validate(r, from_attributes=True) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
