from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from api.deps import Offset, SessionDep, SettingsDep, StoreDep
from api.security import DatasetsRead, DatasetsWrite
from db.models import Dataset
from schemas.api import NO_NUL, DatasetList, DatasetPreview, DatasetPublic
from services import datasets as service

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
