"""Dataset versions: list them, add one (a new upload, or a user's annotations of the head), read a version's rows
for review, diff two versions row by row, and export one in the common formats.

A version is immutable: its file is never rewritten, and the dataset row follows the newest (its head). Two writers
that start from the same head race for the next number; the second gets Conflict and nothing of its write is kept.

A new version's file is its canonical rows (`canonical_jsonl`); a diff reads such files without parsing the rows they
share (`read_canonical`, `diff_canonical`), and parses the files of versions stored otherwise (recorded from a
workflow's file, or stored before uploads were kept canonical).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import Conflict, DomainError, Invalid, NotFound
from core.settings import Settings
from core.status import DatasetVersionKind
from db.models import Dataset, DatasetVersion, new_id
from services.datasets import STORED_FORMAT, check_storage_quota, checked_upload, ready_dataset
from storage import keys
from storage.object_store import ObjectNotFound, ObjectStore, get_bytes, get_file, put_bytes
from versioning.annotations import AnnotationError, RowEdit, apply_edits
from versioning.diff import RowDiff, diff_canonical, diff_rows
from versioning.export import export_lines
from versioning.rows import (
    CanonicalFile,
    Row,
    canonical_jsonl,
    content_hash,
    read_canonical,
    read_version,
    with_added,
)


def list_versions(session: Session, store: ObjectStore, org_id: str, dataset_id: str) -> list[DatasetVersion]:
    dataset = ready_dataset(session, org_id, dataset_id)
    record_first_version(session, store, dataset)
    return list(
        session.scalars(
            select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id).order_by(DatasetVersion.version)
        )
    )


def get_version(session: Session, store: ObjectStore, org_id: str, dataset_id: str, version: int) -> DatasetVersion:
    dataset = ready_dataset(session, org_id, dataset_id)
    record_first_version(session, store, dataset)
    found = session.scalars(
        select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.version == version)
    ).first()
    if found is None:
        raise NotFound(f"dataset {dataset_id} has no version {version} (its newest is {dataset.version})")
    return found


def record_first_version(session: Session, store: ObjectStore, dataset: Dataset) -> None:
    """Record version 1 of a dataset made before versions (or written by a workflow) from its stored file."""
    if session.scalars(select(DatasetVersion.id).where(DatasetVersion.dataset_id == dataset.id)).first():
        return
    rows = rows_at(store, dataset.storage_key, dataset.file_format)
    session.add(
        DatasetVersion(
            dataset_id=dataset.id,
            version=dataset.version,
            parent_version=None,
            content_hash=content_hash(rows),
            row_count=len(rows),
            storage_key=dataset.storage_key,
            file_format=dataset.file_format,
            size_bytes=dataset.size_bytes,
            kind=DatasetVersionKind.RECORDED,
            reason="recorded from the dataset's file",
            created_by=dataset.created_by,
        )
    )
    try:
        session.commit()
    except IntegrityError:  # recorded meanwhile by another request: the same rows
        session.rollback()


def rows_at(store: ObjectStore, storage_key: str, file_format: str) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        return read_version(get_file(store, storage_key, Path(tmp) / f"data.{file_format}"), file_format)


def version_rows(store: ObjectStore, version: DatasetVersion) -> list[Row]:
    return rows_at(store, version.storage_key, version.file_format)


def head_records(session: Session, store: ObjectStore, org_id: str, dataset_id: str) -> list[dict[str, Any]] | None:
    """The records of the dataset's head version; None when the dataset is gone, is a task's training set, or cannot be
    read."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.org_id != org_id or dataset.is_optimized:
        return None
    try:
        return [
            row.record for row in version_rows(store, get_version(session, store, org_id, dataset_id, dataset.version))
        ]
    except (DomainError, ObjectNotFound):
        return None


def version_for_diff(store: ObjectStore, version: DatasetVersion) -> CanonicalFile | list[Row]:
    """The version's file unparsed when it was written canonical (its lines hash to its content hash), else its rows."""
    data = get_bytes(store, version.storage_key)
    if version.file_format == STORED_FORMAT:
        canonical = read_canonical(data, version.content_hash)
        if canonical is not None:
            return canonical
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data.{version.file_format}"
        path.write_bytes(data)
        return read_version(path, version.file_format)


def diff_either(before: CanonicalFile | list[Row], after: CanonicalFile | list[Row]) -> RowDiff:
    """The diff of two versions, without parsing their shared rows when both files were written canonical."""
    if isinstance(before, CanonicalFile) and isinstance(after, CanonicalFile):
        return diff_canonical(before, after)
    return diff_rows(
        before.rows() if isinstance(before, CanonicalFile) else before,
        after.rows() if isinstance(after, CanonicalFile) else after,
    )


def upload_version(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    org_id: str,
    dataset_id: str,
    stream: BinaryIO,
    filename: str,
    reason: str | None,
    created_by: str | None,
    base_version: int | None = None,
) -> DatasetVersion:
    """A new version of the dataset from an uploaded file, validated as a first upload is and stored as its canonical
    rows."""
    head = head_version(session, store, org_id, dataset_id, base_version)
    upload = checked_upload(session, settings, stream, filename, org_id)
    new = read_canonical(upload.data, upload.content_hash)
    changes = diff_either(version_for_diff(store, head), upload.rows if new is None else new).counts
    key = version_key(org_id, dataset_id, head.version + 1, STORED_FORMAT)
    put_bytes(store, key, upload.data)
    return _add_version(
        session,
        store,
        head,
        changes,
        upload.rows,
        content=upload.content_hash,
        key=key,
        size=upload.size,
        kind=DatasetVersionKind.UPLOAD,
        reason=reason,
        created_by=created_by,
    )


def annotate(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    org_id: str,
    dataset_id: str,
    edits: list[RowEdit],
    reason: str,
    created_by: str | None,
    base_version: int | None = None,
) -> DatasetVersion:
    """A new version with the edits applied to the head's rows; Invalid, naming the row and field, for a bad edit."""
    head = head_version(session, store, org_id, dataset_id, base_version)
    parent_rows = version_rows(store, head)
    try:
        rows = apply_edits(parent_rows, edits)
    except AnnotationError as exc:
        raise Invalid(str(exc)) from exc
    kind = DatasetVersionKind.ANNOTATION
    return _store_rows(session, store, settings, org_id, head, parent_rows, rows, kind, reason, created_by)


def replace_rows(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    org_id: str,
    dataset_id: str,
    remove: set[str],
    add: list[dict[str, Any]],
    reason: str,
    base_version: int,
) -> DatasetVersion:
    """A new version by the system (`regeneration`): the head's rows without `remove`, then `add` as new rows."""
    head = head_version(session, store, org_id, dataset_id, base_version)
    parent_rows = version_rows(store, head)
    rows = with_added([r for r in parent_rows if r.id not in remove], add)
    kind = DatasetVersionKind.REGENERATION
    return _store_rows(session, store, settings, org_id, head, parent_rows, rows, kind, reason, None)


def _store_rows(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    org_id: str,
    head: DatasetVersion,
    parent_rows: list[Row],
    rows: list[Row],
    kind: DatasetVersionKind,
    reason: str,
    created_by: str | None,
) -> DatasetVersion:
    """`rows`, made from the head's `parent_rows`, stored canonical as the next version."""
    data = canonical_jsonl(rows)
    check_storage_quota(session, settings, org_id, len(data))
    key = version_key(org_id, head.dataset_id, head.version + 1, STORED_FORMAT)
    put_bytes(store, key, data)
    return _add_version(
        session,
        store,
        head,
        diff_rows(parent_rows, rows).counts,
        rows,
        content=content_hash(rows),
        key=key,
        size=len(data),
        kind=kind,
        reason=reason,
        created_by=created_by,
    )


def version_key(org_id: str, dataset_id: str, version: int, file_format: str) -> str:
    """Where a new version's file goes: unique to the write, so a writer that loses the race for the version number
    deletes only its own file."""
    return keys.dataset_prefix(org_id, dataset_id) + f"v{version}-{new_id()[:12]}.{file_format}"


def head_version(
    session: Session, store: ObjectStore, org_id: str, dataset_id: str, base_version: int | None
) -> DatasetVersion:
    """The dataset's newest version; Conflict when the caller worked from another one (`base_version`)."""
    dataset = ready_dataset(session, org_id, dataset_id)
    if dataset.is_optimized:
        raise Conflict(
            f"dataset {dataset_id} is a task's training set, written by its workflow; it takes no new versions"
        )
    if base_version is not None and base_version != dataset.version:
        raise Conflict(
            f"dataset {dataset_id} is at version {dataset.version}, not {base_version}: "
            "read it again and redo the change"
        )
    return get_version(session, store, org_id, dataset_id, dataset.version)


def _add_version(
    session: Session,
    store: ObjectStore,
    parent: DatasetVersion,
    changes: dict[str, int],
    rows: list[Row],
    *,
    content: str,
    key: str,
    size: int,
    kind: DatasetVersionKind,
    reason: str | None,
    created_by: str | None,
) -> DatasetVersion:
    """Record the version whose canonical file is stored at `key` (deleted again when it is not recorded)."""
    version = DatasetVersion(
        dataset_id=parent.dataset_id,
        version=parent.version + 1,
        parent_version=parent.version,
        content_hash=content,
        row_count=len(rows),
        storage_key=key,
        file_format=STORED_FORMAT,
        size_bytes=size,
        kind=kind,
        reason=reason,
        changes=changes,
        created_by=created_by,
    )
    try:
        dataset = session.get_one(Dataset, parent.dataset_id)
        dataset.version = version.version
        dataset.storage_key, dataset.file_format, dataset.size_bytes, dataset.sample_count = (
            key,
            STORED_FORMAT,
            size,
            len(rows),
        )
        session.add(version)
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        store.delete_prefix(key)
        raise Conflict(
            f"dataset {parent.dataset_id} got version {parent.version + 1} from another change meanwhile: "
            "read it again and redo the change"
        ) from exc
    except BaseException:
        session.rollback()
        store.delete_prefix(key)
        raise
    return version


def diff_versions(
    session: Session, store: ObjectStore, org_id: str, dataset_id: str, before: int | None, after: int | None
) -> tuple[int, int, RowDiff]:
    """(from, to, diff); `after` defaults to the head and `before` to its parent. Version 0 is the empty dataset before
    the first (a first version's parent): every row of the other side is added."""
    head = after or ready_dataset(session, org_id, dataset_id).version
    second = get_version(session, store, org_id, dataset_id, head)
    if before is None:
        before = second.parent_version or 0
    first = (
        version_for_diff(store, get_version(session, store, org_id, dataset_id, before))
        if before
        else CanonicalFile.empty()
    )
    return before, second.version, diff_either(first, version_for_diff(store, second))


def export_version(store: ObjectStore, version: DatasetVersion, file_format: str) -> Iterator[bytes]:
    for line in export_lines(version_rows(store, version), file_format):
        yield line.encode("utf-8")
