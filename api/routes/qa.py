from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import Offset, SessionDep, SettingsDep, StoreDep
from api.routes.datasets import to_public as dataset_public
from api.security import InferenceUse, ModelsRead, QAToDataset
from db.models import QAEntry
from schemas.api import DatasetPublic, FeedbackRequest, QADatasetRequest, QAEntryPublic, QAHistoryList
from services import qa as service

router = APIRouter(prefix="/api/v1/qa", tags=["question answering"])


def entry_public(entry: QAEntry) -> QAEntryPublic:
    return QAEntryPublic(
        entry_id=entry.id, **{k: getattr(entry, k) for k in QAEntryPublic.model_fields if k != "entry_id"}
    )


@router.get("/history", response_model=QAHistoryList)
def list_history(
    caller: ModelsRead,
    session: SessionDep,
    model: Annotated[str | None, Query(max_length=200)] = None,
    conversation_id: Annotated[str | None, Query(max_length=64)] = None,
    rating: Literal["up", "down", "none"] | None = None,
    status: Literal["completed", "failed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> QAHistoryList:
    """Every completion the serving process was asked for, newest first, with how it ended (`status`): by model
    (`name@3`, or `name` for all its versions), conversation, rating (`none`: not rated yet) and status."""
    where = service.HistoryFilter(model=model, conversation_id=conversation_id, rating=rating, status=status)
    rows, total = service.list_history(session, caller.org_id, where, limit, offset)
    return QAHistoryList(items=[entry_public(e) for e in rows], total=total, limit=limit, offset=offset)


@router.post("/history/{entry_id}/feedback", response_model=QAEntryPublic)
def give_feedback(caller: InferenceUse, session: SessionDep, entry_id: str, body: FeedbackRequest) -> QAEntryPublic:
    """Rate an answer up or down, optionally with the answer it should have given (the last rating counts)."""
    return entry_public(
        service.give_feedback(
            session,
            caller.org_id,
            entry_id,
            rating=body.rating,
            corrected_answer=body.corrected_answer,
            user_id=caller.user_id,
        )
    )


@router.post("/datasets", status_code=201, response_model=DatasetPublic)
async def export_dataset(
    caller: QAToDataset,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    body: QADatasetRequest,
    response: Response,
) -> DatasetPublic:
    """Corrected answers, and answers rated up, as a dataset whose rows name their history entries: training data for
    the next continuous task (an answer rated down without a correction is left out)."""
    where = service.HistoryFilter(**body.filter.model_dump())
    dataset = await run_in_threadpool(
        service.export_dataset,
        session,
        store,
        settings,
        org_id=caller.org_id,
        name=body.name,
        where=where,
        created_by=caller.user_id,
        dataset_id=body.dataset_id,
    )
    response.headers["Location"] = f"/api/v1/datasets/{dataset.id}"
    return dataset_public(dataset)
