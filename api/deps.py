"""Shared request dependencies, declared once with Annotated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from core.settings import Settings
from storage.object_store import ObjectStore
from temporal_client import TemporalConnection


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


def get_temporal(request: Request) -> TemporalConnection:
    """The connection itself, not a client: services connect only once a request has been validated."""
    return request.app.state.temporal


# How far a listing may skip: bounded so the number fits every database's integers (unbounded, a huge offset was a 500).
MAX_OFFSET = 2**31 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]

SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
TemporalDep = Annotated[TemporalConnection, Depends(get_temporal)]
