"""Dataset uploads: stream to a temp file with a size cap, validate, store the object, then record the row.

Every upload (a dataset's first and each new version) is stored as its canonical rows
(`versioning.rows.canonical_jsonl`: one JSON line per row, its id first, then the record's keys sorted), whatever
format it came in: a CSV, JSON or chat row is kept as its record. A version is then read and diffed without parsing
the rows it shares with another (`versioning.rows.read_canonical`).

Every lookup is inside one organization (`org_id`): another tenant's dataset is simply not found.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import Conflict, Invalid, QuotaExceeded
from core.settings import Settings
from core.status import DatasetStatus, DatasetVersionKind
from db.models import Dataset, DatasetVersion, KnowledgeBase, KnowledgeDocument, new_id
from ml.examples import DatasetFormatError, detect_format, inspect_file, read_rows
from services.tenancy import get_owned, list_owned
from services.uploads import spool_upload
from storage import keys
from storage.object_store import ObjectStore, get_file, put_bytes
from versioning.rows import Row, canonical_jsonl, content_hash, read_version

# the format a version's file is stored in: its canonical rows
STORED_FORMAT = "jsonl"


@dataclass
class CheckedUpload:
    """An upload validated: its canonical rows, the file to store (those rows as canonical JSONL) and their hash."""

    rows: list[Row]
    data: bytes
    content_hash: str

    @property
    def size(self) -> int:
        return len(self.data)


def checked_upload(session: Session, settings: Settings, stream: BinaryIO, filename: str, org_id: str) -> CheckedUpload:
    """Spool and validate an upload (format, size, quota, line lengths, rows and their checks); Invalid, TooLarge or
    QuotaExceeded, with nothing kept, when it is refused. The quota is checked against the upload, then against the
    canonical file that is stored in its place (a row's id makes it longer)."""
    try:
        file_format = detect_format(filename or "")
    except DatasetFormatError as exc:
        raise Invalid(str(exc)) from exc
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / f"upload.{file_format}"
        size = spool_upload(stream, local, settings.max_upload_bytes, "file").size
        check_storage_quota(session, settings, org_id, size)
        try:
            if file_format != "json":  # a JSON array may legitimately be one long line
                check_line_lengths(local, settings.max_line_bytes)
            inspect_file(local, file_format, max_rows=settings.max_upload_rows)
        except DatasetFormatError as exc:
            raise Invalid(str(exc)) from exc
        rows = read_version(local, file_format)
    data = canonical_jsonl(rows)
    if len(data) > size:
        check_storage_quota(session, settings, org_id, len(data))
    return CheckedUpload(rows, data, content_hash(rows))


def upload_dataset(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    stream: BinaryIO,
    filename: str,
    name: str,
    domain: str | None,
    dataset_type: str | None,
    org_id: str,
    created_by: str | None,
    reason: str | None = None,
) -> Dataset:
    """Validate and store an upload (as its canonical rows) as version 1 of a new dataset; a rejected upload leaves
    nothing in storage or the database."""
    upload = checked_upload(session, settings, stream, filename, org_id)
    dataset_id = new_id()
    key = keys.dataset_prefix(org_id, dataset_id) + f"data.{STORED_FORMAT}"
    put_bytes(store, key, upload.data)
    dataset = Dataset(
        id=dataset_id,
        name=name,
        storage_key=key,
        file_format=STORED_FORMAT,
        size_bytes=upload.size,
        sample_count=len(upload.rows),
        domain=domain,
        dataset_type=dataset_type,
        org_id=org_id,
        created_by=created_by,
        is_optimized=False,
        version=1,
    )
    first = DatasetVersion(
        dataset_id=dataset_id,
        version=1,
        parent_version=None,
        content_hash=upload.content_hash,
        row_count=len(upload.rows),
        storage_key=key,
        file_format=STORED_FORMAT,
        size_bytes=upload.size,
        kind=DatasetVersionKind.UPLOAD,
        reason=reason,
        created_by=created_by,
    )
    try:
        session.add(dataset)
        session.flush()
        session.add(first)
        session.commit()
    except BaseException:
        session.rollback()
        store.delete_prefix(keys.dataset_prefix(org_id, dataset_id))
        raise
    return dataset


def check_line_lengths(path: Path, max_line_bytes: int) -> None:
    with open(path, "rb") as fh:
        for number, line in enumerate(iter(lambda: fh.readline(max_line_bytes + 2), b""), start=1):
            if len(line.rstrip(b"\r\n")) > max_line_bytes:
                raise DatasetFormatError(
                    "a line is too long", [(number, f"longer than the {max_line_bytes} byte limit")]
                )


def storage_bytes(session: Session, org_id: str) -> int:
    """Bytes the organization's uploads hold: its datasets (every version) and its knowledge bases' documents."""
    datasets = session.execute(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.org_id == org_id)
    ).scalar_one()
    documents = session.execute(
        select(func.coalesce(func.sum(KnowledgeDocument.size_bytes), 0))
        .join(KnowledgeBase, KnowledgeBase.id == KnowledgeDocument.knowledge_base_id)
        .where(KnowledgeBase.org_id == org_id)
    ).scalar_one()
    older_versions = session.execute(
        select(func.coalesce(func.sum(DatasetVersion.size_bytes), 0))
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(Dataset.org_id == org_id, DatasetVersion.version != Dataset.version)
    ).scalar_one()
    return datasets + older_versions + documents


def check_storage_quota(session: Session, settings: Settings, org_id: str, new_bytes: int) -> None:
    used = storage_bytes(session, org_id)
    if used + new_bytes > settings.max_storage_bytes_per_org:
        raise QuotaExceeded(
            f"storage quota exceeded: the organization's uploads use {used} bytes, this upload adds {new_bytes}, "
            f"the limit is {settings.max_storage_bytes_per_org} bytes"
        )


def get_dataset(session: Session, org_id: str, dataset_id: str) -> Dataset:
    return get_owned(session, Dataset, org_id, dataset_id, "dataset")


def list_datasets(session: Session, org_id: str, limit: int, offset: int) -> tuple[list[Dataset], int]:
    return list_owned(session, Dataset, org_id, limit, offset)


def ready_dataset(session: Session, org_id: str, dataset_id: str) -> Dataset:
    """The dataset, if its examples are there to read (a generated one is not until its generation has finished)."""
    dataset = get_dataset(session, org_id, dataset_id)
    if dataset.status != DatasetStatus.READY:
        raise Conflict(f"dataset {dataset_id} is {dataset.status}" + (f": {dataset.error}" if dataset.error else ""))
    return dataset


def preview_dataset(store: ObjectStore, dataset: Dataset, limit: int) -> list[dict]:
    """The first `limit` records of the stored file: an upload's canonical rows (each with its row id), or a generated
    dataset's records with their lineage."""
    with tempfile.TemporaryDirectory() as tmp:
        local = get_file(store, dataset.storage_key, Path(tmp) / f"data.{dataset.file_format}")
        rows = []
        for row in read_rows(local, dataset.file_format):
            if row.record is not None:
                rows.append(row.record)
            if len(rows) >= limit:
                break
    return rows
