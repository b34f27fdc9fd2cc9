"""Dataset uploads: stream to a temp file with a size cap, validate, store the object, then record the row."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import Invalid, NotFound, TooLarge
from core.settings import Settings
from db.models import Dataset, new_id
from ml.examples import DatasetFormatError, detect_format, inspect_file, read_rows
from storage import keys
from storage.object_store import ObjectStore, get_file

CHUNK = 1024 * 1024


def upload_dataset(session: Session, store: ObjectStore, settings: Settings, *, stream: BinaryIO, filename: str, name: str,
                   domain: str | None, dataset_type: str | None, owner: str) -> Dataset:
    """Validate and store an upload; a rejected upload leaves nothing in storage or the database."""
    try:
        file_format = detect_format(filename or "")
    except DatasetFormatError as exc:
        raise Invalid(str(exc)) from exc
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / f"upload.{file_format}"
        size = 0
        with open(local, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise TooLarge(f"file is larger than the {settings.max_upload_bytes} byte limit")
                out.write(chunk)
        if size == 0:
            raise Invalid("the file is empty")
        try:
            inspection = inspect_file(local, file_format)
        except DatasetFormatError as exc:
            raise Invalid(str(exc)) from exc
        dataset_id = new_id()
        key = keys.dataset_prefix(owner, dataset_id) + f"data.{file_format}"
        with open(local, "rb") as fh:
            store.put_stream(key, fh, size)
    dataset = Dataset(id=dataset_id, name=name, storage_path=key, file_format=file_format, size_bytes=size, sample_count=inspection.rows,
                      domain=domain, dataset_type=dataset_type, owner=owner, is_optimized=False)
    try:
        session.add(dataset)
        session.commit()
    except BaseException:
        session.rollback()
        store.delete_prefix(keys.dataset_prefix(owner, dataset_id))
        raise
    return dataset


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


def list_datasets(session: Session, limit: int, offset: int) -> tuple[list[Dataset], int]:
    total = session.scalar(select(func.count()).select_from(Dataset))
    rows = session.scalars(select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)).all()
    return list(rows), total


def preview_dataset(store: ObjectStore, dataset: Dataset, limit: int) -> list[dict]:
    """The first `limit` records of the stored file, as they were uploaded."""
    with tempfile.TemporaryDirectory() as tmp:
        local = get_file(store, dataset.storage_path, Path(tmp) / f"data.{dataset.file_format}")
        rows = []
        for row in read_rows(local, dataset.file_format):
            if row.record is not None:
                rows.append(row.record)
            if len(rows) >= limit:
                break
    return rows
