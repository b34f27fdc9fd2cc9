from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from api.deps import Offset, SessionDep, SettingsDep, StoreDep, TemporalDep
from api.routes.datasets import to_public as dataset_public
from api.routes.datasets import version_public
from api.security import KnowledgeRead, KnowledgeToDataset, KnowledgeWrite
from core.errors import Unavailable
from db.models import KnowledgeBase, KnowledgeDocument
from schemas.api import (
    AcceptedProposalsPublic,
    AcceptProposalsRequest,
    ChunkPublic,
    DatasetPublic,
    DocumentDetail,
    DocumentList,
    DocumentPublic,
    GenerateDatasetRequest,
    KnowledgeBaseCreate,
    KnowledgeBaseList,
    KnowledgeBasePublic,
    SearchRequest,
    SearchResponse,
    SearchResult,
    StaleRowList,
    StaleRowPublic,
    StaleRowRef,
    StaleRowState,
)
from services import knowledge as service
from services import staleness

router = APIRouter(prefix="/api/v1/knowledge-bases", tags=["knowledge bases"])
PREVIEW_CHUNKS = 20


def kb_public(kb: KnowledgeBase) -> KnowledgeBasePublic:
    return KnowledgeBasePublic(
        knowledge_base_id=kb.id,
        **{k: getattr(kb, k) for k in KnowledgeBasePublic.model_fields if k != "knowledge_base_id"},
    )


def document_public(document: KnowledgeDocument) -> DocumentPublic:
    return DocumentPublic(
        document_id=document.id, **{k: getattr(document, k) for k in DocumentPublic.model_fields if k != "document_id"}
    )


@router.post("", status_code=201, response_model=KnowledgeBasePublic)
def create_knowledge_base(
    caller: KnowledgeWrite, session: SessionDep, settings: SettingsDep, body: KnowledgeBaseCreate, response: Response
) -> KnowledgeBasePublic:
    """An empty knowledge base; upload documents to it, and its index is built from them."""
    kb = service.create_knowledge_base(
        session,
        settings,
        name=body.name,
        description=body.description,
        org_id=caller.org_id,
        created_by=caller.user_id,
        chunk_tokens=body.chunk_tokens,
        chunk_overlap_tokens=body.chunk_overlap_tokens,
    )
    response.headers["Location"] = f"{router.prefix}/{kb.id}"
    return kb_public(kb)


@router.get("", response_model=KnowledgeBaseList)
def list_knowledge_bases(
    caller: KnowledgeRead, session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Offset = 0
) -> KnowledgeBaseList:
    rows, total = service.list_knowledge_bases(session, caller.org_id, limit, offset)
    return KnowledgeBaseList(items=[kb_public(kb) for kb in rows], total=total, limit=limit, offset=offset)


@router.get("/{kb_id}", response_model=KnowledgeBasePublic)
def get_knowledge_base(caller: KnowledgeRead, session: SessionDep, kb_id: str) -> KnowledgeBasePublic:
    return kb_public(service.get_knowledge_base(session, caller.org_id, kb_id))


@router.delete("/{kb_id}", status_code=204)
async def delete_knowledge_base(
    caller: KnowledgeWrite, session: SessionDep, store: StoreDep, temporal: TemporalDep, kb_id: str
) -> None:
    """The knowledge base, its documents, its index versions and its ingestion workflow."""
    await service.delete_knowledge_base(session, store, temporal, caller.org_id, kb_id)


@router.post("/{kb_id}/documents", status_code=202, response_model=DocumentPublic)
async def upload_document(
    caller: KnowledgeWrite,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    kb_id: str,
    response: Response,
    file: Annotated[UploadFile, File(description="Markdown (.md), plain text (.txt), HTML (.html) or PDF (.pdf)")],
) -> DocumentPublic:
    """Store a document (a file under an existing name is that document's next version) and queue it for indexing:
    202 with the document PENDING; its status becomes INDEXED or FAILED (with the reason) when the build has run."""
    kb = service.get_knowledge_base(session, caller.org_id, kb_id)
    await temporal()  # reachable before anything is stored (503 otherwise)
    upload = await run_in_threadpool(
        service.store_document,
        session,
        store,
        settings,
        kb,
        stream=file.file,
        filename=file.filename or "",
        created_by=caller.user_id,
    )
    try:
        await service.request_build(temporal, settings, kb, [upload.document.id])
    except Unavailable:
        await run_in_threadpool(service.discard_upload, session, store, upload)
        raise
    await run_in_threadpool(service.keep_upload, store, upload)
    response.headers["Location"] = f"{router.prefix}/{kb_id}/documents/{upload.document.id}"
    return document_public(upload.document)


@router.get("/{kb_id}/documents", response_model=DocumentList)
def list_documents(caller: KnowledgeRead, session: SessionDep, kb_id: str) -> DocumentList:
    kb = service.get_knowledge_base(session, caller.org_id, kb_id)
    return DocumentList(items=[document_public(d) for d in service.list_documents(session, kb)])


@router.get("/{kb_id}/documents/{document_id}", response_model=DocumentDetail)
def get_document(
    caller: KnowledgeRead, request: Request, session: SessionDep, kb_id: str, document_id: str
) -> DocumentDetail:
    """The document with a preview of its chunks in the current index."""
    kb = service.get_knowledge_base(session, caller.org_id, kb_id)
    document = service.get_document(session, kb, document_id)
    chunks = service.document_chunks(request.app.state.knowledge_indexes, kb, document, PREVIEW_CHUNKS)
    return DocumentDetail(
        **document_public(document).model_dump(),
        chunks=[ChunkPublic(**{k: getattr(c, k) for k in ChunkPublic.model_fields}) for c in chunks],
    )


@router.delete("/{kb_id}/documents/{document_id}", status_code=202, response_model=DocumentPublic)
async def delete_document(
    caller: KnowledgeWrite,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    kb_id: str,
    document_id: str,
) -> DocumentPublic:
    """Remove a document: it leaves search at once, and the index at the next build (queued now)."""
    kb = service.get_knowledge_base(session, caller.org_id, kb_id)
    await temporal()
    document = await run_in_threadpool(service.delete_document, session, store, kb, document_id)
    await service.request_build(temporal, settings, kb, [document.id])
    return document_public(document)


@router.post("/{kb_id}/datasets", status_code=202, response_model=DatasetPublic)
async def generate_dataset(
    caller: KnowledgeToDataset,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    kb_id: str,
    body: GenerateDatasetRequest,
    response: Response,
) -> DatasetPublic:
    """A question/answer dataset written from the knowledge base's chunks and validated (answer supported by its chunk,
    the question retrieves its chunk, no near duplicates); 202 with the dataset GENERATING, READY or FAILED when done.
    Every example records its document, document version and chunk (see the dataset's preview)."""
    kb = service.get_knowledge_base(session, caller.org_id, kb_id)
    dataset = await service.generate_dataset(
        session,
        temporal,
        settings,
        kb,
        name=body.name,
        questions_per_chunk=body.questions_per_chunk,
        generator=body.generator,
        model_name=body.model_name,
        created_by=caller.user_id,
    )
    response.headers["Location"] = f"/api/v1/datasets/{dataset.id}"
    return dataset_public(dataset)


@router.post("/{kb_id}/search", response_model=SearchResponse)
async def search(
    caller: KnowledgeRead, request: Request, session: SessionDep, kb_id: str, body: SearchRequest
) -> SearchResponse:
    """The chunks most similar to the query (cosine similarity of MiniLM embeddings), best first."""
    kb = service.get_knowledge_base(session, caller.org_id, kb_id)
    hits = await run_in_threadpool(
        service.search, session, request.app.state.knowledge_indexes, kb, body.query, body.top_k
    )
    return SearchResponse(
        knowledge_base_id=kb.id,
        version=kb.version,
        results=[
            SearchResult(
                rank=h.rank,
                score=h.score,
                text=h.chunk.text,
                chunk_id=h.chunk.chunk_id,
                document_id=h.chunk.document_id,
                filename=h.chunk.filename,
                heading_path=h.chunk.heading_path,
            )
            for h in hits
        ],
    )


@router.get("/{kb_id}/stale-rows", response_model=StaleRowList)
def list_stale_rows(
    caller: KnowledgeRead,
    session: SessionDep,
    store: StoreDep,
    kb_id: str,
    state: Annotated[StaleRowState | None, Query(description="only the rows in this state")] = None,
) -> StaleRowList:
    """The dataset rows that new versions of the knowledge base's documents contradict, newest first, with the value
    that changed and each row's state in its dataset's head."""
    found = staleness.list_stale_rows(session, store, caller.org_id, kb_id, state)
    items = [
        StaleRowPublic(
            **{
                k: getattr(f.record, k)
                for k in StaleRowPublic.model_fields
                if k not in ("marked_in_version", "state", "head_version", "proposed_answer", "proposed_checks")
            },
            marked_in_version=f.record.dataset_version,
            state=f.state,
            head_version=f.head_version,
            proposed_answer=f.proposal.answer if f.proposal else None,
            proposed_checks=f.proposal.checks if f.proposal else None,
        )
        for f in found
    ]
    return StaleRowList(knowledge_base_id=kb_id, items=items, total=len(items))


@router.post("/{kb_id}/stale-rows/accept-proposals", response_model=AcceptedProposalsPublic)
def accept_proposals(
    caller: KnowledgeToDataset,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    kb_id: str,
    body: AcceptProposalsRequest,
) -> AcceptedProposalsPublic:
    """Accept the proposed corrections of the knowledge base's stale rows (every one, or those named): one annotation
    per dataset gives each row its proposed answer and checks and brings it back into training, with who and why. A
    named row that is not stale is a 422, and nothing is written; rows without a proposal stay stale and are listed."""
    done = staleness.accept_proposals(
        session,
        store,
        settings,
        org_id=caller.org_id,
        knowledge_base_id=kb_id,
        row_ids=body.row_ids,
        reason=body.reason,
        created_by=caller.user_id,
    )

    def refs(rows: list[staleness.ListedStaleRow]) -> list[StaleRowRef]:
        return [
            StaleRowRef(dataset_id=r.record.dataset_id, row_id=r.record.row_id, question=r.record.question)
            for r in rows
        ]

    return AcceptedProposalsPublic(
        knowledge_base_id=kb_id,
        accepted=refs(done.accepted),
        without_proposal=refs(done.without_proposal),
        dataset_versions=[version_public(v) for v in done.versions],
    )
