"""Erasure that follows lineage: a dataset row, a knowledge-base document, or everything one user sent.

What the erased data reached is found by lineage and cleaned the same way for every kind:
- **dataset versions**: every version that held an erased row is rewritten without it (its content hash chain
  recorded), the dataset's head follows;
- **the search index**: a document's chunks leave the live index (written as a new index version from the remaining
  chunks and their vectors, nothing embedded again), and the older index versions kept for rollback that held them are
  deleted; the rows generated from its chunks (their lineage names the document) are erased as rows;
- **what was made from it**: every stored artifact of the tasks trained on an erased row or with the knowledge base's
  passages, and the tasks continuing them (training sets, locked splits, passages, evaluations, reports), is scrubbed of
  the erased texts (`versioning.scrub`); so are the promotion gates' figures; the question-answering history's answers
  drop the sources that name an erased document;
- **stale rows**: the records of rows a new document version contradicted (`services.staleness`) that name an erased
  row, or quote an erased document's sentences, are deleted;
- **models**: every model version trained on it is flagged "trained on erased data" and listed (an adapter cannot
  unlearn);
- an `Erasure` record says what was removed, where and when.

Erasing a user removes the completions they asked (the question-answering history) and erases the rows of every
dataset and the documents of every knowledge base they uploaded.

Not covered here: Temporal's workflow histories keep activity inputs and results until the namespace's retention
deletes them; the platform's logs and traces are not rewritten.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import Conflict, NotFound
from core.status import KnowledgeBaseStatus
from db.models import (
    Dataset,
    DatasetVersion,
    Erasure,
    KnowledgeBase,
    KnowledgeDocument,
    MLTask,
    ModelVersion,
    PromotionGate,
    QAEntry,
    RegisteredModel,
    StaleRow,
)
from knowledge.index import KnowledgeIndex
from ml.examples import record_to_pair
from services.dataset_versions import list_versions, version_key, version_rows
from services.knowledge import get_document, get_knowledge_base
from services.tasks import trained_on
from services.tenancy import get_owned
from storage import keys
from storage.object_store import ObjectNotFound, ObjectStore, get_bytes, get_dir, put_bytes, put_dir
from versioning.rows import Row, canonical_jsonl, content_hash
from versioning.scrub import Needles, scrub_blob, scrub_json


@dataclass
class _Reach:
    """What one erasure has found and cleaned so far."""

    texts: list[str] = field(default_factory=list)  # the erased texts, scrubbed from everything made of them
    chain: list[dict] = field(default_factory=list)  # each rewritten dataset or index version, before and after
    blobs: list[str] = field(default_factory=list)  # stored files rewritten (or written) without the erased data
    stale_keys: list[str] = field(default_factory=list)  # stored files to delete once the database points elsewhere
    task_ids: set[str] = field(default_factory=set)  # tasks trained on it
    knowledge_bases: set[str] = field(default_factory=set)  # whose passages held it
    documents: set[str] = field(default_factory=set)  # erased documents, which the history's sources may name


def erase_row(
    session: Session,
    store: ObjectStore,
    *,
    org_id: str,
    dataset_id: str,
    row_id: str,
    reason: str,
    requested_by: str | None,
) -> Erasure:
    """Erase one row of a dataset, wherever it went; NotFound when no version of the dataset holds it."""
    reach = _Reach()
    if not _erase_rows(session, store, org_id, dataset_id, lambda row: row.id == row_id, reach):
        raise NotFound(f"no version of dataset {dataset_id} holds row {row_id}")
    return _finish(session, store, org_id, reach, "row", f"{dataset_id}/{row_id}", reason, requested_by)


def erase_document(
    session: Session,
    store: ObjectStore,
    *,
    org_id: str,
    knowledge_base_id: str,
    document_id: str,
    reason: str,
    requested_by: str | None,
) -> Erasure:
    """Erase a knowledge-base document: its bytes, its chunks from every index version, the dataset rows generated from
    it, and what they reached. Conflict while the knowledge base is building an index (it may be indexing the
    document): erase once the build ends."""
    kb = get_knowledge_base(session, org_id, knowledge_base_id)
    document = get_document(session, kb, document_id)
    reach = _Reach()
    _erase_document(session, store, kb, document, reach)
    return _finish(session, store, org_id, reach, "document", f"{kb.id}/{document.id}", reason, requested_by)


def erase_user(
    session: Session, store: ObjectStore, *, org_id: str, user_id: str, reason: str, requested_by: str | None
) -> Erasure:
    """Erase everything one user sent in an organization: the completions they asked (their messages and the answers),
    the rows of every dataset they uploaded (every version), and every document they uploaded; NotFound when the
    organization holds nothing of theirs."""
    documents = session.execute(
        select(KnowledgeDocument, KnowledgeBase)
        .join(KnowledgeBase, KnowledgeBase.id == KnowledgeDocument.knowledge_base_id)
        .where(KnowledgeBase.org_id == org_id, KnowledgeDocument.created_by == user_id)
    ).all()
    for document, kb in documents:  # refused before anything is touched
        _check_not_building(kb, document)
    reach = _Reach()
    asked = list(session.scalars(select(QAEntry).where(QAEntry.org_id == org_id, QAEntry.user_id == user_id)))
    for entry in asked:
        reach.texts.extend(m.get("content", "") for m in entry.messages if m.get("role") == "user")
        reach.texts.extend(t for t in (entry.answer, entry.corrected_answer) if t)
        session.delete(entry)
    asked_ids = {entry.id for entry in asked}
    uploaded = set(session.scalars(select(Dataset.id).where(Dataset.org_id == org_id, Dataset.created_by == user_id)))
    rows = 0
    for dataset_id in sorted(uploaded):  # their own datasets, whole
        rows += _erase_rows(session, store, org_id, dataset_id, lambda row: True, reach)
    if asked_ids:  # elsewhere, the feedback rows made of the completions they asked
        others = set(session.scalars(select(Dataset.id).where(Dataset.org_id == org_id))) - uploaded
        for dataset_id in sorted(others):
            rows += _erase_rows(
                session, store, org_id, dataset_id, lambda row: row.record.get("qa_history_id") in asked_ids, reach
            )
    for document, kb in documents:
        _erase_document(session, store, kb, document, reach)
    if not (asked or rows or documents):
        raise NotFound(f"user {user_id} not found: this organization holds nothing they sent")
    reach.chain.append({"qa_entries_deleted": len(asked)})
    return _finish(session, store, org_id, reach, "user", user_id, reason, requested_by)


def list_erasures(session: Session, org_id: str) -> list[Erasure]:
    return list(session.scalars(select(Erasure).where(Erasure.org_id == org_id).order_by(Erasure.created_at.desc())))


def get_erasure(session: Session, org_id: str, erasure_id: str) -> Erasure:
    return get_owned(session, Erasure, org_id, erasure_id, "erasure")


# ---------------------------------------------------------------- the data itself


def _erase_rows(
    session: Session, store: ObjectStore, org_id: str, dataset_id: str, erased: Callable[[Row], bool], reach: _Reach
) -> int:
    """Rewrite every version of a dataset without the rows `erased` picks; the number of rows erased."""
    held: set[int] = set()
    count = 0
    for version in list_versions(session, store, org_id, dataset_id):
        rows = version_rows(store, version)
        gone = [r for r in rows if erased(r)]
        if not gone:
            continue
        count += len(gone)
        held.add(version.version)
        for row in gone:
            try:
                reach.texts.extend(record_to_pair(row.record))
            except ValueError:
                reach.texts.append(row.canonical())
        _rewrite(store, org_id, dataset_id, version, [r for r in rows if not erased(r)], reach)
        # the record of a stale row keeps its question and answer
        session.execute(
            delete(StaleRow).where(StaleRow.dataset_id == dataset_id, StaleRow.row_id.in_([r.id for r in gone]))
        )
    if not held:
        return 0
    dataset = session.get_one(Dataset, dataset_id)
    head = session.scalar(
        select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == dataset.version)
    )
    if head is not None and head.version in held:
        dataset.storage_key, dataset.file_format = head.storage_key, head.file_format
        dataset.size_bytes, dataset.sample_count = head.size_bytes, head.row_count
    reach.task_ids |= set(
        session.scalars(select(MLTask.id).where(MLTask.org_id == org_id, trained_on(dataset_id, held)))
    )
    return count


def _rewrite(
    store: ObjectStore, org_id: str, dataset_id: str, version: DatasetVersion, rows: list[Row], reach: _Reach
) -> None:
    data, digest = canonical_jsonl(rows), content_hash(rows)
    key = version_key(org_id, dataset_id, version.version, "jsonl")
    put_bytes(store, key, data)
    reach.chain.append(
        {
            "dataset_id": dataset_id,
            "version": version.version,
            "content_hash_before": version.content_hash,
            "content_hash_after": digest,
            "rows_before": version.row_count,
            "rows_after": len(rows),
        }
    )
    reach.stale_keys.append(version.storage_key)
    reach.blobs.append(key)
    version.storage_key, version.file_format, version.size_bytes = key, "jsonl", len(data)
    version.content_hash, version.row_count = digest, len(rows)


def _erase_document(
    session: Session, store: ObjectStore, kb: KnowledgeBase, document: KnowledgeDocument, reach: _Reach
) -> None:
    _check_not_building(kb, document)
    reach.knowledge_bases.add(kb.id)
    reach.documents.add(document.id)
    with tempfile.TemporaryDirectory() as tmp:
        for version in range(1, kb.version + 1):  # kb.version grows below only after the last one was read
            prefix = keys.knowledge_index_prefix(kb.org_id, kb.id, version)
            try:
                index = KnowledgeIndex.load(get_dir(store, prefix, Path(tmp) / f"v{version}"))
            except (ObjectNotFound, FileNotFoundError):
                continue  # not kept
            chunks = [c for c in index.chunks if c.document_id == document.id]
            if not chunks:  # a version that never held it (the document failed to index, or came later) stays
                continue
            reach.texts.extend(c.text for c in chunks)
            live = prefix == kb.index_key
            if live:  # a new live version without the document's chunks
                remaining = index.without(document.id)
                kb.version += 1
                new_prefix = keys.knowledge_index_prefix(kb.org_id, kb.id, kb.version)
                reach.blobs.extend(put_dir(store, new_prefix, remaining.save(Path(tmp) / "live")))
                kb.index_key, kb.chunk_count = new_prefix, len(remaining.chunks)
                kb.document_count = len(remaining.chunk_counts)
            reach.chain.append(
                {
                    "knowledge_base_id": kb.id,
                    "index_version": version,
                    "live": live,
                    "chunks_before": len(index.chunks),
                    "chunks_after": len(index.chunks) - len(chunks),
                    "replaced_by": kb.version if live else None,  # an older version is deleted
                }
            )
            reach.stale_keys.append(prefix)  # an older version that held it, or the live one just replaced
    kb.total_bytes = max(0, kb.total_bytes - document.size_bytes)
    # the records of the rows its new versions made stale keep its sentences
    session.execute(delete(StaleRow).where(StaleRow.document_id == document.id))
    reach.stale_keys.append(keys.knowledge_base_prefix(kb.org_id, kb.id) + f"documents/{document.id}/")
    session.delete(document)
    # the rows generated from its chunks, in any dataset of the organization
    for (dataset_id,) in session.execute(
        select(Dataset.id).where(Dataset.org_id == kb.org_id, Dataset.source_knowledge_base_id == kb.id)
    ):
        _erase_rows(session, store, kb.org_id, dataset_id, lambda row: _generated_from(row, document.id), reach)


def _check_not_building(kb: KnowledgeBase, document: KnowledgeDocument) -> None:
    if kb.status == KnowledgeBaseStatus.BUILDING.value:
        raise Conflict(
            f"knowledge base {kb.id} is building an index, which may hold document {document.id}: "
            "erase it once the build has ended"
        )


def _generated_from(row: Row, document_id: str) -> bool:
    lineage = row.record.get("lineage")
    return isinstance(lineage, list) and any(
        isinstance(step, dict) and step.get("document_id") == document_id for step in lineage
    )


# ---------------------------------------------------------------- what was made of it


def _finish(
    session: Session,
    store: ObjectStore,
    org_id: str,
    reach: _Reach,
    kind: str,
    target: str,
    reason: str,
    requested_by: str | None,
) -> Erasure:
    """Scrub what the erased data reached, flag the model versions trained on it, record the erasure, and delete the
    stored files the database no longer points at."""
    needles = Needles(reach.texts)
    task_ids = set(reach.task_ids)
    if reach.knowledge_bases:
        task_ids |= set(
            session.scalars(
                select(MLTask.id).where(MLTask.org_id == org_id, MLTask.knowledge_base_id.in_(reach.knowledge_bases))
            )
        )
    frontier = set(task_ids)
    while frontier:  # the incremental tasks that continue them
        children = set(session.scalars(select(MLTask.id).where(MLTask.parent_task_id.in_(frontier))))
        frontier = children - task_ids
        task_ids |= frontier
    for task_id in sorted(task_ids):
        for prefix in (f"optimized/{task_id}-opt", keys.evaluation_prefix(task_id), f"models/{task_id}/"):
            for name in store.list(prefix):
                cleaned = scrub_blob(name, get_bytes(store, name), needles)
                if cleaned is not None:
                    put_bytes(store, name, cleaned)
                    reach.blobs.append(name)

    now = utcnow()
    trained = session.execute(
        select(ModelVersion, RegisteredModel.name)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(ModelVersion.org_id == org_id, ModelVersion.task_id.in_(task_ids))
        .order_by(RegisteredModel.name, ModelVersion.version)
    ).all()
    flagged = []
    for model_version, name in trained:
        model_version.erased_data_at = now
        flagged.append(f"{name}@{model_version.version}")
    models = {model_version.model_id for model_version, _ in trained}
    for gate in session.scalars(select(PromotionGate).where(PromotionGate.model_id.in_(models))):
        if gate.figures:
            gate.figures = scrub_json(gate.figures, needles)
    if reach.knowledge_bases:  # the sources the history names: an erased document's go (its headings are its text)
        for entry in session.scalars(
            select(QAEntry).where(QAEntry.org_id == org_id, QAEntry.knowledge_base_id.in_(reach.knowledge_bases))
        ):
            kept = [s for s in entry.sources if not (isinstance(s, dict) and s.get("document_id") in reach.documents)]
            entry.sources = scrub_json(kept, needles)

    erasure = Erasure(
        org_id=org_id,
        kind=kind,
        target=target,
        reason=reason,
        requested_by=requested_by,
        dataset_versions=reach.chain,
        blobs=reach.blobs,
        model_versions=flagged,
        created_at=now,
    )
    session.add(erasure)
    session.commit()
    for key in reach.stale_keys:  # the files that held it go once the database points at their rewrites
        if key not in reach.blobs:
            store.delete_prefix(key)
    return erasure
