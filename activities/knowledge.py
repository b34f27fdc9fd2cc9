"""Knowledge-base activities: the status projection, building a new index version from the documents the knowledge
base holds now (parse, chunk, embed only what is new or changed, index, store, then make it live), and marking the
dataset rows that its replaced documents' new text contradicts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext, Heartbeater
from core.clock import utcnow
from core.status import KnowledgeBaseStatus, check_knowledge_base_transition
from db.models import KnowledgeBase, KnowledgeDocument
from knowledge.chunking import ChunkingConfig
from knowledge.index import KnowledgeIndex
from knowledge.ingest import SourceDocument, build_index
from observability import metrics
from schemas.workflow_io import (
    BuildKnowledgeIndexInput,
    BuildKnowledgeIndexResult,
    MarkStaleRowsInput,
    MarkStaleRowsResult,
    RecordKnowledgeBaseInput,
)
from services import staleness
from storage import keys
from storage.object_store import ObjectNotFound, get_bytes, get_dir, put_dir

INDEXED, FAILED, PENDING = "INDEXED", "FAILED", "PENDING"
KEEP_VERSIONS = 2  # the live version and the one before it (a search may still be reading it)


class KnowledgeActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="record_knowledge_base")
    def record_knowledge_base(self, inp: RecordKnowledgeBaseInput) -> None:
        """Apply one status move to the knowledge_bases row (idempotent, so retries are safe)."""
        with self.ctx.sessions.begin() as session:
            kb = session.get(KnowledgeBase, inp.knowledge_base_id, with_for_update=True)
            if kb is None:  # deleted while its workflow was still recording: nothing to project onto
                return
            current, target = KnowledgeBaseStatus(kb.status), KnowledgeBaseStatus(inp.status)
            if current != target:
                try:
                    check_knowledge_base_transition(current, target)
                except ValueError as exc:
                    raise ApplicationError(
                        f"projection refuses {exc} for knowledge base {kb.id}",
                        type="IllegalTransition",
                        non_retryable=True,
                    ) from exc
            kb.status = target.value
            kb.error = inp.error

    @activity.defn(name="build_knowledge_index")
    def build_knowledge_index(self, inp: BuildKnowledgeIndexInput) -> BuildKnowledgeIndexResult:
        with Heartbeater() as heartbeat:
            return self._build(inp, heartbeat)

    def _build(self, inp: BuildKnowledgeIndexInput, heartbeat: Heartbeater) -> BuildKnowledgeIndexResult:
        from knowledge.embeddings import count_tokens, embed

        heartbeat.update(stage="reading documents")
        with self.ctx.sessions() as session:
            kb = session.get(KnowledgeBase, inp.knowledge_base_id)
            if kb is None:
                raise ApplicationError(
                    f"knowledge base {inp.knowledge_base_id} does not exist",
                    type="MissingKnowledgeBase",
                    non_retryable=True,
                )
            # documents that failed at their current version are not tried again until a new version is uploaded
            rows = session.scalars(
                select(KnowledgeDocument)
                .where(KnowledgeDocument.knowledge_base_id == kb.id, KnowledgeDocument.status != FAILED)
                .order_by(KnowledgeDocument.created_at, KnowledgeDocument.id)
            ).all()
            documents = [SourceDocument(d.id, d.version, d.filename, d.media_type) for d in rows]
            sources = {d.id: d.storage_key for d in rows}
            version, index_key, config = (
                kb.version,
                kb.index_key,
                ChunkingConfig(kb.chunk_tokens, kb.chunk_overlap_tokens),
            )

        with tempfile.TemporaryDirectory() as tmp:
            previous = self._load(index_key, Path(tmp) / "previous")
            indexed = {(c.document_id, c.document_version) for c in previous.chunks} if previous else set()
            if (
                previous is not None
                and indexed == {(d.document_id, d.version) for d in documents}
                and not any(r.status == PENDING for r in rows)
            ):
                self._commit(inp.knowledge_base_id, version, index_key, previous, [], changed=False)
                return self._result(version, False, previous, 0, 0, {})

            def read(document: SourceDocument) -> bytes:
                return get_bytes(self.ctx.store, sources[document.document_id])

            def progress(stage: str, done: int, total: int) -> None:
                heartbeat.update(stage=f"{stage} {done}/{total}", done=done, total=total)

            outcome = build_index(documents, previous, read, embed, count_tokens, config, progress)
            version += 1
            prefix = keys.knowledge_index_prefix(inp.org_id, inp.knowledge_base_id, version)
            heartbeat.update(stage="storing the index")
            self.ctx.store.delete_prefix(prefix)  # a retried attempt rewrites its own version from scratch
            put_dir(self.ctx.store, prefix, outcome.index.save(Path(tmp) / "new"))
        failed = [o for o in outcome.documents if o.status == FAILED]
        before = {c.document_id: c.document_version for c in previous.chunks} if previous else {}
        replaced = [
            o.document_id
            for o in outcome.documents
            if o.status == INDEXED and o.document_id in before and before[o.document_id] != o.version
        ]
        metrics.knowledge_ingested(
            indexed=len(outcome.documents) - len(failed), failed=len(failed), chunks=outcome.embedded_chunks
        )
        self._commit(inp.knowledge_base_id, version, prefix, outcome.index, outcome.documents, changed=True)
        for old in range(1, version - KEEP_VERSIONS + 1):
            self.ctx.store.delete_prefix(keys.knowledge_index_prefix(inp.org_id, inp.knowledge_base_id, old))
        activity.logger.info(
            "knowledge base %s version %s: %s chunks (%s embedded), %s documents failed",
            inp.knowledge_base_id,
            version,
            len(outcome.index.chunks),
            outcome.embedded_chunks,
            len(failed),
        )
        return self._result(
            version, True, outcome.index, outcome.embedded_chunks, len(failed), outcome.seconds, replaced
        )

    @activity.defn(name="mark_stale_rows")
    def mark_stale_rows(self, inp: MarkStaleRowsInput) -> MarkStaleRowsResult:
        """Compare the replaced documents' text in this index version with the version before, and mark the rows it
        contradicts stale in the datasets that ground on the knowledge base (services.staleness)."""
        both = self.ctx.knowledge_indexes.with_previous(inp.org_id, inp.knowledge_base_id, inp.version)
        if both is None:  # a version was pruned: nothing left to compare
            activity.logger.warning("knowledge base %s: cannot compare its versions", inp.knowledge_base_id)
            return MarkStaleRowsResult(rows=0, datasets=[])
        previous, current = both
        changes = staleness.document_changes(previous, current, inp.document_ids)
        with self.ctx.sessions() as session:
            kb = session.get(KnowledgeBase, inp.knowledge_base_id)
            if kb is None or not changes:
                return MarkStaleRowsResult(rows=0, datasets=[])
            recorded = staleness.mark_stale_rows(session, self.ctx.store, self.ctx.settings, kb, inp.version, changes)
        datasets = sorted({r.dataset_id for r in recorded})
        activity.logger.info(
            "knowledge base %s version %s: %s rows stale in %s",
            inp.knowledge_base_id,
            inp.version,
            len(recorded),
            datasets,
        )
        return MarkStaleRowsResult(rows=len(recorded), datasets=datasets)

    def _load(self, index_key: str | None, directory: Path) -> KnowledgeIndex | None:
        if not index_key:
            return None
        try:
            return KnowledgeIndex.load(get_dir(self.ctx.store, index_key, directory))
        except ObjectNotFound:
            return None

    def _commit(
        self, kb_id: str, version: int, index_key: str | None, index: KnowledgeIndex, outcomes, changed: bool
    ) -> None:
        """Make the version live and record each document's outcome, in one transaction. A document replaced or deleted
        while the build ran keeps its newer state (its change is queued for the next build)."""
        with self.ctx.sessions.begin() as session:
            kb = session.get(KnowledgeBase, kb_id, with_for_update=True)
            if kb is None:
                return
            by_id = {
                d.id: d
                for d in session.scalars(select(KnowledgeDocument).where(KnowledgeDocument.knowledge_base_id == kb_id))
            }
            for outcome in outcomes:
                document = by_id.get(outcome.document_id)
                if document is not None and document.version == outcome.version:
                    document.status, document.chunk_count, document.error = (
                        outcome.status,
                        outcome.chunk_count,
                        outcome.error,
                    )
                    document.updated_at = utcnow()
            kb.version, kb.index_key = version, index_key
            kb.document_count = len({c.document_id for c in index.chunks})
            kb.chunk_count = len(index.chunks)
            kb.total_bytes = sum(d.size_bytes for d in by_id.values())
            if changed:
                kb.updated_at = utcnow()

    @staticmethod
    def _result(
        version: int,
        changed: bool,
        index: KnowledgeIndex,
        embedded: int,
        failed: int,
        seconds: dict,
        replaced: list[str] | None = None,
    ) -> BuildKnowledgeIndexResult:
        return BuildKnowledgeIndexResult(
            version=version,
            changed=changed,
            document_count=len({c.document_id for c in index.chunks}),
            chunk_count=len(index.chunks),
            embedded_chunks=embedded,
            failed_documents=failed,
            index_kind=index.index.kind,
            seconds=seconds,
            replaced_documents=replaced or [],
        )
