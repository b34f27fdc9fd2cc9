from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import SessionDep, StoreDep
from api.security import DatasetsRead, DatasetsWrite, KnowledgeWrite, MembersWrite
from db.models import Erasure
from schemas.api import DocumentErasureRequest, ErasurePublic, ErasureRequest, UserErasureRequest
from services import erasure as service

router = APIRouter(prefix="/api/v1/erasures", tags=["erasures"])


def erasure_public(erasure: Erasure) -> ErasurePublic:
    return ErasurePublic(
        erasure_id=erasure.id, **{k: getattr(erasure, k) for k in ErasurePublic.model_fields if k != "erasure_id"}
    )


def created(erasure: Erasure, response: Response) -> ErasurePublic:
    """A new erasure's record, its own address in `Location`."""
    response.headers["Location"] = f"{router.prefix}/{erasure.id}"
    return erasure_public(erasure)


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
    return created(erasure, response)


@router.post("/documents", status_code=201, response_model=ErasurePublic)
def erase_document(
    caller: KnowledgeWrite, session: SessionDep, store: StoreDep, body: DocumentErasureRequest, response: Response
) -> ErasurePublic:
    """Erase a knowledge-base document wherever it went: its bytes, its chunks from the live index (a new index version
    from the remaining chunks) and from the older versions kept (deleted), the dataset rows generated from it, the
    artifacts of the tasks trained with the knowledge base's passages, the sources quoted in the answering history;
    the model versions trained on it are flagged and listed. 409 while the knowledge base is building an index."""
    erasure = service.erase_document(
        session,
        store,
        org_id=caller.org_id,
        knowledge_base_id=body.knowledge_base_id,
        document_id=body.document_id,
        reason=body.reason,
        requested_by=caller.user_id,
    )
    return created(erasure, response)


@router.post("/users", status_code=201, response_model=ErasurePublic)
def erase_user(
    caller: MembersWrite, session: SessionDep, store: StoreDep, body: UserErasureRequest, response: Response
) -> ErasurePublic:
    """Erase everything one user sent in this organization (an admin's request): the completions they asked, every
    dataset they uploaded (all its rows, every version), the feedback rows made of their completions, and every
    document they uploaded, each wherever it went."""
    erasure = service.erase_user(
        session, store, org_id=caller.org_id, user_id=body.user_id, reason=body.reason, requested_by=caller.user_id
    )
    return created(erasure, response)


@router.get("", response_model=list[ErasurePublic])
def list_erasures(caller: DatasetsRead, session: SessionDep) -> list[ErasurePublic]:
    """The organization's erasures, newest first: what each removed, where, and which model versions it flagged."""
    return [erasure_public(e) for e in service.list_erasures(session, caller.org_id)]


@router.get("/{erasure_id}", response_model=ErasurePublic)
def get_erasure(caller: DatasetsRead, session: SessionDep, erasure_id: str) -> ErasurePublic:
    """One erasure: what it removed, where, and which model versions it flagged."""
    return erasure_public(service.get_erasure(session, caller.org_id, erasure_id))
