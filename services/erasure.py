"""Erasure that follows lineage: a dataset row leaves every version of its dataset that held it (each version's file
rewritten without it, its content hash chain recorded), every stored artifact of the tasks trained on those versions
(training sets, locked splits, passages, evaluations, reports), and the promotion gates' figures; every model version
trained on it is flagged "trained on erased data" (an adapter cannot unlearn), and an `Erasure` record says what was
removed, where and when.

Not covered here: Temporal's workflow histories keep activity inputs and results until the namespace's retention
deletes them, and the QA history keeps what users asked (their own erasure is not built yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import NotFound
from db.models import Dataset, DatasetVersion, Erasure, MLTask, ModelVersion, PromotionGate, RegisteredModel
from ml.examples import record_to_pair
from services.dataset_versions import list_versions, version_key, version_rows
from services.tasks import trained_on
from storage import keys
from storage.object_store import ObjectStore, get_bytes, put_bytes
from versioning.rows import Row, canonical_jsonl, content_hash
from versioning.scrub import Needles, scrub_blob, scrub_json


@dataclass
class _Rewrite:
    version: DatasetVersion
    rows: list[Row]


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
    versions = list_versions(session, store, org_id, dataset_id)
    holding: list[_Rewrite] = []
    texts: list[str] = []
    for version in versions:
        rows = version_rows(store, version)
        erased = [r for r in rows if r.id == row_id]
        if erased:
            holding.append(_Rewrite(version, [r for r in rows if r.id != row_id]))
            for row in erased:
                try:
                    texts.extend(record_to_pair(row.record))
                except ValueError:
                    texts.append(row.canonical())
    if not holding:
        raise NotFound(f"no version of dataset {dataset_id} holds row {row_id}")
    needles = Needles(texts)

    chain, blobs, old_keys = [], [], []
    for rewrite in holding:
        version = rewrite.version
        data = canonical_jsonl(rewrite.rows)
        key = version_key(org_id, dataset_id, version.version, "jsonl")
        put_bytes(store, key, data)
        chain.append(
            {
                "version": version.version,
                "content_hash_before": version.content_hash,
                "content_hash_after": content_hash(rewrite.rows),
                "rows_before": version.row_count,
                "rows_after": len(rewrite.rows),
            }
        )
        old_keys.append(version.storage_key)
        blobs.append(key)
        version.storage_key, version.file_format, version.size_bytes = key, "jsonl", len(data)
        version.content_hash, version.row_count = content_hash(rewrite.rows), len(rewrite.rows)
    dataset = session.get_one(Dataset, dataset_id)
    head = next((r.version for r in holding if r.version.version == dataset.version), None)
    if head is not None:
        dataset.storage_key, dataset.file_format = head.storage_key, head.file_format
        dataset.size_bytes, dataset.sample_count = head.size_bytes, head.row_count

    # what was made from those versions: the tasks that trained on them (and the incremental tasks that continue them)
    held = {r.version.version for r in holding}
    task_ids = set(session.scalars(select(MLTask.id).where(MLTask.org_id == org_id, trained_on(dataset_id, held))))
    frontier = set(task_ids)
    while frontier:
        children = set(session.scalars(select(MLTask.id).where(MLTask.parent_task_id.in_(frontier))))
        frontier = children - task_ids
        task_ids |= frontier
    for task_id in sorted(task_ids):
        for prefix in (f"optimized/{task_id}-opt", keys.evaluation_prefix(task_id), f"models/{task_id}/"):
            for name in store.list(prefix):
                cleaned = scrub_blob(name, get_bytes(store, name), needles)
                if cleaned is not None:
                    put_bytes(store, name, cleaned)
                    blobs.append(name)

    flagged = []
    now = utcnow()
    versions_trained = session.execute(
        select(ModelVersion, RegisteredModel.name)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(ModelVersion.org_id == org_id, ModelVersion.task_id.in_(task_ids))
        .order_by(RegisteredModel.name, ModelVersion.version)
    ).all()
    for model_version, name in versions_trained:
        model_version.erased_data_at = now
        flagged.append(f"{name}@{model_version.version}")
    models = {model_version.model_id for model_version, _ in versions_trained}
    for gate in session.scalars(select(PromotionGate).where(PromotionGate.model_id.in_(models))):
        if gate.figures:
            gate.figures = scrub_json(gate.figures, needles)

    erasure = Erasure(
        org_id=org_id,
        kind="row",
        target=f"{dataset_id}/{row_id}",
        reason=reason,
        requested_by=requested_by,
        dataset_versions=chain,
        blobs=blobs,
        model_versions=flagged,
        created_at=now,
    )
    session.add(erasure)
    session.commit()
    for key in old_keys:  # the files that held it go once the versions point at their rewrites
        if key not in blobs:
            store.delete_prefix(key)
    return erasure


def list_erasures(session: Session, org_id: str) -> list[Erasure]:
    return list(session.scalars(select(Erasure).where(Erasure.org_id == org_id).order_by(Erasure.created_at.desc())))
