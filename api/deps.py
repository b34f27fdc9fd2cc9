"""Shared request dependencies, declared once with Annotated."""

from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from temporalio.client import Client

from core.settings import Settings
from storage.object_store import ObjectStore


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


async def get_temporal(request: Request) -> Client:
    return await request.app.state.temporal()


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
