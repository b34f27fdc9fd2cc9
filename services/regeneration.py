"""Datasets generated from a knowledge base, kept in step with it: when a new index version replaces documents, the
rows that were written from chunks whose text is gone are generated again from the chunks that replaced them.

A row's chunk is in its lineage (`ml.generation.validate`: the action `generated`, with the document and the chunk).
Chunk ids change with every document version (`knowledge.index.chunk_id`), so a chunk counts as changed by its text:
a row is regenerated when its document was replaced and the new version of that document has no chunk with its
chunk's text. The new rows are written from the new version's chunks whose text the old version did not have, by the
generator the dataset was made with (its `generation_log`), and validated against the new index as a generated
dataset is, never repeating a row that stays.

Each dataset gets one new version by the system (kind `regeneration`), whose diff shows the rows removed and added
and whose reason says why. The stale-row marking (`services.staleness`) runs first: a stale row that is regenerated
is `removed` from its list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.settings import Settings
from core.status import DatasetStatus
from db.models import Dataset, KnowledgeBase
from knowledge.index import ChunkRecord, KnowledgeIndex
from ml.examples import Example, record_to_pair
from ml.generation import Embedder, GeneratedPair, validate
from services import dataset_versions as versions
from storage.object_store import ObjectStore
from versioning.rows import Row

Generate = Callable[[Dataset, list[ChunkRecord]], list[GeneratedPair]]  # the dataset's own generator on the chunks


@dataclass(frozen=True)
class Regenerated:
    dataset_id: str
    version: int  # the dataset version that holds the new rows
    removed: int
    added: int
    chunks: int  # the changed chunks written from


def generated_datasets(session: Session, kb: KnowledgeBase) -> list[Dataset]:
    """The ready datasets generated from the knowledge base."""
    return list(
        session.scalars(
            select(Dataset)
            .where(
                Dataset.org_id == kb.org_id,
                Dataset.source_knowledge_base_id == kb.id,
                Dataset.dataset_type == "generated",
                Dataset.status == DatasetStatus.READY.value,
                Dataset.is_optimized.is_(False),
            )
            .order_by(Dataset.created_at, Dataset.id)
        )
    )


def generated_from(row: Row) -> tuple[str, str] | None:
    """The document and the chunk the row was written from, when its lineage says so."""
    lineage = row.record.get("lineage")
    if not isinstance(lineage, list):
        return None
    for cause in lineage:
        if isinstance(cause, dict) and cause.get("action") == "generated" and cause.get("chunk_id"):
            return str(cause.get("document_id")), str(cause["chunk_id"])
    return None


def _texts(index: KnowledgeIndex, document_ids: set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {d: set() for d in document_ids}
    for chunk in index.chunks:
        if chunk.document_id in out:
            out[chunk.document_id].add(chunk.text)
    return out


def rows_from_changed_chunks(
    rows: list[Row], previous: KnowledgeIndex, current: KnowledgeIndex, document_ids: set[str]
) -> list[Row]:
    """The rows written from a chunk of a replaced document whose text the new version no longer holds (or whose text
    is not known any more: it came from an older version than `previous`)."""
    before = {c.chunk_id: c for c in previous.chunks}
    now = {c.chunk_id for c in current.chunks}
    kept_texts = _texts(current, document_ids)
    out = []
    for row in rows:
        source = generated_from(row)
        if source is None or source[0] not in document_ids or source[1] in now:
            continue
        chunk = before.get(source[1])
        if chunk is None or chunk.text not in kept_texts[source[0]]:
            out.append(row)
    return out


def changed_chunks(previous: KnowledgeIndex, current: KnowledgeIndex, document_ids: set[str]) -> list[ChunkRecord]:
    """The new version's chunks of the replaced documents whose text the version before did not have."""
    old_texts = _texts(previous, document_ids)
    return [c for c in current.chunks if c.document_id in document_ids and c.text not in old_texts[c.document_id]]


def regenerate_rows(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    kb: KnowledgeBase,
    kb_version: int,
    previous: KnowledgeIndex,
    current: KnowledgeIndex,
    document_ids: list[str],
    generate: Generate,
    embed: Embedder,
) -> list[Regenerated]:
    """In each dataset generated from the knowledge base, the rows from changed chunks replaced by rows generated from
    the chunks that changed, in one new version; the datasets with nothing to regenerate are left as they are."""
    replaced = set(document_ids)
    chunks = changed_chunks(previous, current, replaced)
    out = []
    for dataset in generated_datasets(session, kb):
        head = versions.head_version(session, store, kb.org_id, dataset.id, None)
        rows = versions.version_rows(store, head)
        gone = rows_from_changed_chunks(rows, previous, current, replaced)
        if not gone:
            continue
        gone_ids = {r.id for r in gone}
        staying = [_example(r) for r in rows if r.id not in gone_ids]
        pairs = generate(dataset, chunks) if chunks else []
        validated = validate(pairs, current, embed, existing=[e for e in staying if e is not None])
        version = versions.replace_rows(
            session,
            store,
            settings,
            org_id=kb.org_id,
            dataset_id=dataset.id,
            remove=gone_ids,
            add=[e.to_json() for e in validated.examples],
            reason=_reason(kb, kb_version, current, replaced, len(gone), len(validated.examples), len(chunks)),
            base_version=head.version,
        )
        dataset = session.get_one(Dataset, dataset.id)
        dataset.source_knowledge_base_version = kb_version
        session.commit()
        out.append(Regenerated(dataset.id, version.version, len(gone), len(validated.examples), len(chunks)))
    return out


def _example(row: Row) -> Example | None:
    try:
        question, answer = record_to_pair(row.record)
    except ValueError:
        return None
    return Example(question, answer, id=row.id)


def _reason(
    kb: KnowledgeBase,
    kb_version: int,
    current: KnowledgeIndex,
    replaced: set[str],
    removed: int,
    added: int,
    chunks: int,
) -> str:
    names = sorted({f"{c.filename} v{c.document_version}" for c in current.chunks if c.document_id in replaced})
    return (
        f"knowledge base {kb.name!r} v{kb_version} replaced {', '.join(names)}: {removed} rows written from chunks "
        f"that changed were removed, {added} rows generated from the {chunks} chunks that changed"
    )
