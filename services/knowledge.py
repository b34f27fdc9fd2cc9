"""Knowledge bases and their documents, inside one organization: create, upload (streamed, checked, stored, then
handed to the knowledge base's ingestion workflow), list, delete, and search the current index version.

Every lookup is inside one organization (`org_id`): another tenant's knowledge base is simply not found.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from core.errors import Conflict, Invalid, NotFound, Unavailable
from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from core.status import TERMINAL_STATUSES, DatasetStatus, KnowledgeBaseStatus
from db.models import Dataset, KnowledgeBase, KnowledgeDocument, MLTask, new_id
from knowledge.documents import MEDIA_TYPES, DocumentError, check_content, media_type_of
from knowledge.embeddings import EMBEDDING_MODEL
from knowledge.index import ChunkRecord, KnowledgeIndex, SearchHit
from ml.base_model import UnknownModel, validate_model_name
from schemas.workflow_io import DocumentsChanged, GenerationInput, IngestionInput
from services.datasets import check_storage_quota
from services.tasks import Temporal
from services.tenancy import get_owned, list_owned
from services.uploads import spool_upload
from storage import keys
from storage.object_store import ObjectNotFound, ObjectStore, get_dir
from temporal_client.workflows import (
    DatasetGenerationWorkflow,
    KnowledgeIngestionWorkflow,
    generation_workflow_id,
    ingestion_workflow_id,
    signal_name,
)

if TYPE_CHECKING:
    import numpy as np

WORKFLOW_CLOSE_TIMEOUT = timedelta(seconds=30)  # how long deleting a knowledge base waits for its ingestion to stop
PENDING = "PENDING"
SUFFIXES = {media_type: suffix for suffix, media_type in MEDIA_TYPES.items() if suffix in ("md", "txt", "html", "pdf")}


# ---------------------------------------------------------------- knowledge bases


def create_knowledge_base(
    session: Session,
    settings: Settings,
    *,
    name: str,
    description: str | None,
    org_id: str,
    created_by: str | None,
    chunk_tokens: int | None = None,
    chunk_overlap_tokens: int | None = None,
) -> KnowledgeBase:
    chunk_tokens = chunk_tokens or settings.knowledge_chunk_tokens
    overlap = settings.knowledge_chunk_overlap_tokens if chunk_overlap_tokens is None else chunk_overlap_tokens
    if overlap >= chunk_tokens:
        raise Invalid(f"chunk_overlap_tokens ({overlap}) must be less than chunk_tokens ({chunk_tokens})")
    kb = KnowledgeBase(
        id=new_id(),
        org_id=org_id,
        name=name,
        description=description,
        created_by=created_by,
        status=KnowledgeBaseStatus.CREATED.value,
        embedding_model=EMBEDDING_MODEL,
        chunk_tokens=chunk_tokens,
        chunk_overlap_tokens=overlap,
        document_count=0,
        chunk_count=0,
        total_bytes=0,
        version=0,
    )
    session.add(kb)
    session.commit()
    return kb


def get_knowledge_base(session: Session, org_id: str, knowledge_base_id: str) -> KnowledgeBase:
    return get_owned(session, KnowledgeBase, org_id, knowledge_base_id, "knowledge base")


def list_knowledge_bases(session: Session, org_id: str, limit: int, offset: int) -> tuple[list[KnowledgeBase], int]:
    return list_owned(session, KnowledgeBase, org_id, limit, offset)


async def delete_knowledge_base(
    session: Session, store: ObjectStore, temporal: Temporal, org_id: str, knowledge_base_id: str
) -> None:
    """Stop its ingestion (cancelled; terminated if it does not stop in time), then remove its objects and rows.
    Refused while a task that uses it runs (it reads the index at every iteration)."""
    kb = get_knowledge_base(session, org_id, knowledge_base_id)
    using = session.scalars(
        select(MLTask.id).where(
            MLTask.knowledge_base_id == kb.id,
            MLTask.started_at.is_not(None),
            MLTask.status.not_in([s.value for s in TERMINAL_STATUSES]),
        )
    ).all()
    if using:
        raise Conflict(
            f"knowledge base {kb.id} is used by running task {', '.join(using)}: cancel it or wait until it ends"
        )
    handle = (await temporal()).get_workflow_handle_for(KnowledgeIngestionWorkflow.run, ingestion_workflow_id(kb.id))
    try:
        await handle.cancel()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:  # NOT_FOUND: no ingestion ever ran
            raise Unavailable(f"could not stop the knowledge base's ingestion: {exc.message}") from exc
    else:
        try:
            await asyncio.wait_for(handle.result(), WORKFLOW_CLOSE_TIMEOUT.total_seconds())
        except TimeoutError:
            await handle.terminate("knowledge base deleted")
        except (WorkflowFailureError, RPCError):
            pass  # cancelled: the expected ending
    store.delete_prefix(keys.knowledge_base_prefix(kb.org_id, kb.id))
    session.delete(kb)  # its documents go with it (ON DELETE CASCADE)
    session.commit()


# ---------------------------------------------------------------- documents


def list_documents(session: Session, kb: KnowledgeBase) -> list[KnowledgeDocument]:
    return list(
        session.scalars(
            select(KnowledgeDocument)
            .where(KnowledgeDocument.knowledge_base_id == kb.id)
            .order_by(KnowledgeDocument.created_at, KnowledgeDocument.id)
        )
    )


def get_document(session: Session, kb: KnowledgeBase, document_id: str) -> KnowledgeDocument:
    document = session.get(KnowledgeDocument, document_id)
    if document is None or document.knowledge_base_id != kb.id:
        raise NotFound(f"document {document_id} not found")
    return document


@dataclass
class StoredUpload:
    """An upload stored as a document (or as its next version), until its build is requested."""

    document: KnowledgeDocument
    replaced: dict | None  # the fields of the version it replaced, to restore if the upload is discarded


REPLACED_FIELDS = ("version", "media_type", "size_bytes", "sha256", "storage_key", "status", "chunk_count", "error")


def store_document(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    kb: KnowledgeBase,
    *,
    stream: BinaryIO,
    filename: str,
    created_by: str | None,
) -> StoredUpload:
    """Check and store an upload as a new document, or as the next version of the document of that name.
    A rejected upload leaves nothing in storage or the database."""
    try:
        media_type = media_type_of(filename)
    except DocumentError as exc:
        raise Invalid(str(exc)) from exc
    name = Path(filename).name
    if not name or len(name) > 255:
        raise Invalid("the file name must be 1-255 characters")
    with tempfile.TemporaryDirectory() as tmp:
        spooled = spool_upload(stream, Path(tmp) / "upload", settings.max_document_bytes, "document")
        local, size, sha256 = spooled.path, spooled.size, spooled.sha256
        with open(local, "rb") as fh:
            head = fh.read(4096)
        try:
            check_content(head, media_type)
        except DocumentError as exc:
            raise Invalid(str(exc)) from exc
        same = session.scalar(
            select(KnowledgeDocument).where(
                KnowledgeDocument.knowledge_base_id == kb.id, KnowledgeDocument.sha256 == sha256
            )
        )
        if same is not None:
            raise Conflict(f"document {same.id} ({same.filename!r}) already holds these exact bytes")
        document = session.scalar(
            select(KnowledgeDocument).where(
                KnowledgeDocument.knowledge_base_id == kb.id, KnowledgeDocument.filename == name
            )
        )
        check_storage_quota(session, settings, kb.org_id, size - (document.size_bytes if document else 0))
        replaced = {f: getattr(document, f) for f in REPLACED_FIELDS} if document else None
        if document is None:
            document = KnowledgeDocument(
                id=new_id(), knowledge_base_id=kb.id, filename=name, version=1, created_by=created_by
            )
            session.add(document)
        else:
            document.version += 1
        key = keys.knowledge_document_key(kb.org_id, kb.id, document.id, document.version, SUFFIXES[media_type])
        document.media_type, document.size_bytes, document.sha256, document.storage_key = media_type, size, sha256, key
        document.status, document.chunk_count, document.error = PENDING, 0, None
        with open(local, "rb") as fh:
            store.put_stream(key, fh, size)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        store.delete_prefix(key)
        raise
    return StoredUpload(document, replaced)


def keep_upload(store: ObjectStore, upload: StoredUpload) -> None:
    """The build is requested: the replaced version's bytes can go (the index keeps its chunks until the build replaces
    them)."""
    if upload.replaced:
        store.delete_prefix(upload.replaced["storage_key"])


def discard_upload(session: Session, store: ObjectStore, upload: StoredUpload) -> None:
    """Undo `store_document` when the build could not be requested: nothing is left half-written."""
    document = upload.document
    store.delete_prefix(document.storage_key)
    if upload.replaced is None:
        session.delete(document)
    else:
        for name, value in upload.replaced.items():
            setattr(document, name, value)
    session.commit()


def delete_document(session: Session, store: ObjectStore, kb: KnowledgeBase, document_id: str) -> KnowledgeDocument:
    """Remove the document and its bytes; its chunks leave search at once and the index at the next build."""
    document = get_document(session, kb, document_id)
    store.delete_prefix(keys.knowledge_base_prefix(kb.org_id, kb.id) + f"documents/{document.id}/")
    session.delete(document)
    session.commit()
    return document


async def request_build(temporal: Temporal, settings: Settings, kb: KnowledgeBase, document_ids: list[str]) -> None:
    """Tell the knowledge base's ingestion workflow what changed, starting it if it is not running
    (signal-with-start)."""
    client = await temporal()
    inp = IngestionInput(
        knowledge_base_id=kb.id,
        org_id=kb.org_id,
        status=kb.status,
        settle_seconds=settings.knowledge_settle_seconds,
        idle_seconds=settings.knowledge_idle_seconds,
        heartbeat_seconds=settings.heartbeat_timeout_seconds,
        max_attempts=settings.activity_max_attempts,
    )
    try:
        await client.start_workflow(
            KnowledgeIngestionWorkflow.run,
            inp,
            id=ingestion_workflow_id(kb.id),
            task_queue=TASK_QUEUE_WORKFLOWS,
            start_signal=signal_name(KnowledgeIngestionWorkflow.documents_changed),
            start_signal_args=[DocumentsChanged(document_ids=document_ids)],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except RPCError as exc:
        raise Unavailable(f"could not reach the knowledge base's ingestion workflow: {exc.message}") from exc


# ---------------------------------------------------------------- datasets generated from a knowledge base


async def generate_dataset(
    session: Session,
    temporal: Temporal,
    settings: Settings,
    kb: KnowledgeBase,
    *,
    name: str,
    questions_per_chunk: int,
    generator: str,
    model_name: str,
    created_by: str | None,
) -> Dataset:
    """A dataset row, GENERATING, and the workflow that writes, validates and stores its examples."""
    if not kb.index_key:
        raise Conflict(
            f"knowledge base {kb.id} has no index yet (it is {kb.status}): upload documents and wait until it is READY"
        )
    if generator == "teacher" and not (settings.teacher_url and settings.teacher_model):
        raise Invalid("generator: no teacher is configured (set WLOPS_TEACHER_URL and WLOPS_TEACHER_MODEL)")
    try:
        validate_model_name(model_name)
    except UnknownModel as exc:
        raise Invalid(f"model_name: {exc}") from exc
    client = await temporal()
    dataset_id = new_id()
    dataset = Dataset(
        id=dataset_id,
        name=name,
        storage_key=keys.dataset_prefix(kb.org_id, dataset_id) + "data.jsonl",
        file_format="jsonl",
        size_bytes=0,
        sample_count=0,
        org_id=kb.org_id,
        created_by=created_by,
        is_optimized=False,
        dataset_type="generated",
        status=DatasetStatus.GENERATING.value,
        source_knowledge_base_id=kb.id,
        source_knowledge_base_version=kb.version,
    )
    session.add(dataset)
    session.commit()
    try:
        await client.start_workflow(
            DatasetGenerationWorkflow.run,
            GenerationInput(
                dataset_id=dataset_id,
                org_id=kb.org_id,
                knowledge_base_id=kb.id,
                model_name=model_name,
                questions_per_chunk=questions_per_chunk,
                generator=generator,
                heartbeat_seconds=settings.heartbeat_timeout_seconds,
                max_attempts=settings.activity_max_attempts,
            ),
            id=generation_workflow_id(dataset_id),
            task_queue=TASK_QUEUE_WORKFLOWS,
        )
    except RPCError as exc:
        session.delete(dataset)
        session.commit()
        raise Unavailable(f"could not start the generation: {exc.message}") from exc
    return dataset


# ---------------------------------------------------------------- search


class IndexCache:
    """Index versions loaded from object storage, the most recently used kept in memory (a version never changes)."""

    def __init__(self, store: ObjectStore, size: int = 8):
        self.store = store
        self.size = size
        self._loaded: OrderedDict[str, KnowledgeIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, index_key: str) -> KnowledgeIndex:
        with self._lock:
            if index_key in self._loaded:
                self._loaded.move_to_end(index_key)
                return self._loaded[index_key]
        with tempfile.TemporaryDirectory() as tmp:
            index = KnowledgeIndex.load(get_dir(self.store, index_key, Path(tmp)))
        with self._lock:
            self._loaded[index_key] = index
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
        return index

    def with_previous(self, org_id: str, kb_id: str, version: int) -> tuple[KnowledgeIndex, KnowledgeIndex] | None:
        """The knowledge base's index `version` and the one before it; None when either was pruned."""
        try:
            return (
                self.get(keys.knowledge_index_prefix(org_id, kb_id, version - 1)),
                self.get(keys.knowledge_index_prefix(org_id, kb_id, version)),
            )
        except ObjectNotFound:
            return None


def current_index(cache: IndexCache, kb: KnowledgeBase) -> KnowledgeIndex:
    """The knowledge base's live index version (empty before its first build)."""
    if not kb.index_key:
        return KnowledgeIndex.empty()
    try:
        return cache.get(kb.index_key)
    except ObjectNotFound as exc:
        raise NotFound(f"the index of knowledge base {kb.id} is missing from storage") from exc


def search(
    session: Session,
    cache: IndexCache,
    kb: KnowledgeBase,
    query: str,
    top_k: int,
    query_vector: np.ndarray | None = None,
) -> list[SearchHit]:
    """The `top_k` chunks most similar to `query` among documents the knowledge base still holds (`query_vector`: the
    query's embedding, when the caller needs it too and has it already)."""
    from knowledge.embeddings import embed

    index = current_index(cache, kb)
    live = {d.id for d in list_documents(session, kb)}
    # a deleted document stays in the index until the next build: ask for as many more hits as it has chunks
    stale = sum(count for document_id, count in index.chunk_counts.items() if document_id not in live)
    hits = index.search(embed([query]) if query_vector is None else query_vector, top_k + stale)[0]
    kept = [h for h in hits if h.chunk.document_id in live][:top_k]
    return [SearchHit(h.chunk, h.score, rank) for rank, h in enumerate(kept, start=1)]


def document_chunks(cache: IndexCache, kb: KnowledgeBase, document: KnowledgeDocument, limit: int) -> list[ChunkRecord]:
    """The first `limit` chunks of the document's version in the live index (none before it is indexed)."""
    rows = [
        c
        for c in current_index(cache, kb).chunks
        if c.document_id == document.id and c.document_version == document.version
    ]
    return rows[:limit]
