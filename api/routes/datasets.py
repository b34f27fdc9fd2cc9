from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import Offset, SessionDep, SettingsDep, StoreDep
from api.security import DatasetsRead, DatasetsWrite
from db.models import Dataset, DatasetVersion
from schemas.api import (
    NO_NUL,
    ChangedRowPublic,
    DatasetAnnotationRequest,
    DatasetDiff,
    DatasetList,
    DatasetPreview,
    DatasetPublic,
    DatasetRowPublic,
    DatasetRows,
    DatasetVersionList,
    DatasetVersionPublic,
    DiffRowPublic,
)
from services import dataset_versions as versions
from services import datasets as service
from versioning.annotations import RowEdit
from versioning.export import reviewed

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


def to_public(dataset: Dataset) -> DatasetPublic:
    return DatasetPublic(
        dataset_id=dataset.id, **{k: getattr(dataset, k) for k in DatasetPublic.model_fields if k != "dataset_id"}
    )


@router.post("", status_code=201, response_model=DatasetPublic)
async def upload_dataset(
    caller: DatasetsWrite,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[
        UploadFile,
        File(description="JSONL, JSON or CSV in question/answer, instruction/input/output or chat messages format"),
    ],
    name: Annotated[str, Form(min_length=1, max_length=200, pattern=NO_NUL)],
    domain: Annotated[str | None, Form(max_length=200, pattern=NO_NUL)] = None,
    dataset_type: Annotated[str | None, Form(max_length=64, pattern=NO_NUL)] = None,
) -> DatasetPublic:
    dataset = await run_in_threadpool(
        service.upload_dataset,
        session,
        store,
        settings,
        stream=file.file,
        filename=file.filename or "",
        name=name,
        domain=domain,
        dataset_type=dataset_type,
        org_id=caller.org_id,
        created_by=caller.user_id,
    )
    response.headers["Location"] = f"{router.prefix}/{dataset.id}"
    return to_public(dataset)


@router.get("", response_model=DatasetList)
def list_datasets(
    caller: DatasetsRead, session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Offset = 0
) -> DatasetList:
    rows, total = service.list_datasets(session, caller.org_id, limit, offset)
    return DatasetList(items=[to_public(d) for d in rows], total=total, limit=limit, offset=offset)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(caller: DatasetsRead, session: SessionDep, dataset_id: str) -> DatasetPublic:
    return to_public(service.get_dataset(session, caller.org_id, dataset_id))


@router.get("/{dataset_id}/preview", response_model=DatasetPreview)
def preview_dataset(
    caller: DatasetsRead,
    session: SessionDep,
    store: StoreDep,
    dataset_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> DatasetPreview:
    dataset = service.ready_dataset(session, caller.org_id, dataset_id)
    return DatasetPreview(dataset_id=dataset_id, rows=service.preview_dataset(store, dataset, limit), limit=limit)


# --- versions ---------------------------------------------------------------------------------------------------------

VersionNumber = Annotated[int, Path(ge=1, le=1_000_000)]


def version_public(version: DatasetVersion) -> DatasetVersionPublic:
    return DatasetVersionPublic.model_validate(version, from_attributes=True)


@router.get("/{dataset_id}/versions", response_model=DatasetVersionList)
def list_versions(caller: DatasetsRead, session: SessionDep, store: StoreDep, dataset_id: str) -> DatasetVersionList:
    """Every version, oldest first: its content hash, row count, parent, who made it, when and why."""
    items = versions.list_versions(session, store, caller.org_id, dataset_id)
    return DatasetVersionList(dataset_id=dataset_id, head=items[-1].version, items=[version_public(v) for v in items])


@router.post("/{dataset_id}/versions", status_code=201, response_model=DatasetVersionPublic)
async def upload_version(
    caller: DatasetsWrite,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    dataset_id: str,
    file: Annotated[UploadFile, File(description="The dataset's rows, whole: validated as a first upload is")],
    reason: Annotated[str | None, Form(max_length=1000, pattern=NO_NUL)] = None,
    base_version: Annotated[
        int | None, Form(ge=1, description="409 if the dataset is no longer at this version")
    ] = None,
) -> DatasetVersionPublic:
    """A new version of the dataset from a file; tasks already made keep the version they pinned."""
    version = await run_in_threadpool(
        versions.upload_version,
        session,
        store,
        settings,
        org_id=caller.org_id,
        dataset_id=dataset_id,
        stream=file.file,
        filename=file.filename or "",
        reason=reason,
        created_by=caller.user_id,
        base_version=base_version,
    )
    response.headers["Location"] = f"{router.prefix}/{dataset_id}/versions/{version.version}"
    return version_public(version)


@router.post("/{dataset_id}/annotations", status_code=201, response_model=DatasetVersionPublic)
def annotate(
    caller: DatasetsWrite,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    dataset_id: str,
    body: DatasetAnnotationRequest,
) -> DatasetVersionPublic:
    """Correct rows' answers or checks, tag rows, exclude rows or bring them back: one new version, with who and why."""
    version = versions.annotate(
        session,
        store,
        settings,
        org_id=caller.org_id,
        dataset_id=dataset_id,
        edits=[RowEdit(**edit.model_dump()) for edit in body.edits],
        reason=body.reason,
        created_by=caller.user_id,
        base_version=body.base_version,
    )
    response.headers["Location"] = f"{router.prefix}/{dataset_id}/versions/{version.version}"
    return version_public(version)


@router.get("/{dataset_id}/versions/{version}", response_model=DatasetVersionPublic)
def get_version(
    caller: DatasetsRead, session: SessionDep, store: StoreDep, dataset_id: str, version: VersionNumber
) -> DatasetVersionPublic:
    return version_public(versions.get_version(session, store, caller.org_id, dataset_id, version))


@router.get("/{dataset_id}/versions/{version}/rows", response_model=DatasetRows)
def version_rows(
    caller: DatasetsRead,
    session: SessionDep,
    store: StoreDep,
    dataset_id: str,
    version: VersionNumber,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
    tag: Annotated[str | None, Query(max_length=64, pattern=NO_NUL, description="Only rows with this tag")] = None,
    excluded: Annotated[
        bool | None, Query(description="Only excluded rows (true) or only included ones (false)")
    ] = None,
) -> DatasetRows:
    """The rows for review: question, answer and the checks that judge an answer (derived ones marked `derived`)."""
    found = versions.get_version(session, store, caller.org_id, dataset_id, version)
    rows = [
        r
        for r in reviewed(versions.version_rows(store, found))
        if (tag is None or tag in r.tags) and (excluded is None or r.excluded == excluded)
    ]
    return DatasetRows(
        dataset_id=dataset_id,
        version=version,
        items=[
            DatasetRowPublic(row_id=r.id, **{k: v for k, v in asdict(r).items() if k != "id"})
            for r in rows[offset : offset + limit]
        ],
        total=len(rows),
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{dataset_id}/versions/{version}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/jsonl": {}}, "description": "One JSON object per line"}},
)
def download_version(
    caller: DatasetsRead,
    session: SessionDep,
    store: StoreDep,
    dataset_id: str,
    version: VersionNumber,
    format: Annotated[
        Literal["jsonl", "alpaca", "chat"],
        Query(
            description="jsonl: the version's rows with their ids and annotations; alpaca or chat: ready to train on "
            "(excluded rows left out)"
        ),
    ] = "jsonl",
) -> StreamingResponse:
    found = versions.get_version(session, store, caller.org_id, dataset_id, version)
    return StreamingResponse(
        versions.export_version(store, found, format),
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{dataset_id}-v{version}-{format}.jsonl"'},
    )


@router.get("/{dataset_id}/diff", response_model=DatasetDiff)
def diff_versions(
    caller: DatasetsRead,
    session: SessionDep,
    store: StoreDep,
    dataset_id: str,
    from_version: Annotated[
        int | None,
        Query(ge=0, le=1_000_000, description="The older side (default: the newer side's parent; 0: no rows)"),
    ] = None,
    to_version: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="The newer side (default: the head)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> DatasetDiff:
    """Rows added, removed and changed (by row id) from one version to another, with the fields that changed."""
    before, after, diff = versions.diff_versions(session, store, caller.org_id, dataset_id, from_version, to_version)
    return DatasetDiff(
        dataset_id=dataset_id,
        from_version=before,
        to_version=after,
        counts=diff.counts,
        added=[DiffRowPublic(row_id=r.id, record=r.record) for r in diff.added[:limit]],
        removed=[DiffRowPublic(row_id=r.id, record=r.record) for r in diff.removed[:limit]],
        changed=[
            ChangedRowPublic(row_id=c.id, fields=c.fields, before=c.before, after=c.after) for c in diff.changed[:limit]
        ],
        limit=limit,
    )
