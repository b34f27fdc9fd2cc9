from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import SessionDep, StoreDep
from api.security import DatasetsRead, DatasetsWrite
from db.models import Erasure
from schemas.api import ErasurePublic, ErasureRequest
from services import erasure as service

router = APIRouter(prefix="/api/v1/erasures", tags=["erasures"])


def erasure_public(erasure: Erasure) -> ErasurePublic:
    return ErasurePublic(
        erasure_id=erasure.id, **{k: getattr(erasure, k) for k in ErasurePublic.model_fields if k != "erasure_id"}
    )


@router.post("", status_code=201, response_model=ErasurePublic)
def erase(
    caller: DatasetsWrite, session: SessionDep, store: StoreDep, body: ErasureRequest, response: Response
) -> ErasurePublic:
    """Erase a dataset row wherever it went: every version of its dataset that held it (rewritten, with the hash chain
    recorded), the stored artifacts of the tasks trained on it, the gates' figures; the model versions trained on it
    are flagged and listed."""
    erasure = service.erase_row(
        session,
        store,
        org_id=caller.org_id,
        dataset_id=body.dataset_id,
        row_id=body.row_id,
        reason=body.reason,
        requested_by=caller.user_id,
    )
    response.headers["Location"] = f"{router.prefix}/{erasure.id}"
    return erasure_public(erasure)


@router.get("", response_model=list[ErasurePublic])
def list_erasures(caller: DatasetsRead, session: SessionDep) -> list[ErasurePublic]:
    """The organization's erasures, newest first: what each removed, where, and which model versions it flagged."""
    return [erasure_public(e) for e in service.list_erasures(session, caller.org_id)]
