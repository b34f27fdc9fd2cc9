from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import SessionDep
from api.security import KeysManage
from schemas.api import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from services import identity as service

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_api_key(caller: KeysManage, session: SessionDep, body: ApiKeyCreate, response: Response) -> ApiKeyCreated:
    """A key for programs, with the given scopes; the secret is in this response only."""
    key = service.create_api_key(session, caller, body)
    response.headers["Location"] = f"{router.prefix}/{key.key_id}"
    return key


@router.get("", response_model=list[ApiKeyPublic])
def list_api_keys(caller: KeysManage, session: SessionDep) -> list[ApiKeyPublic]:
    return service.list_api_keys(session, caller)


@router.delete("/{key_id}", response_model=ApiKeyPublic)
def revoke_api_key(caller: KeysManage, session: SessionDep, key_id: str) -> ApiKeyPublic:
    """Revoke a key at once; it stays listed with `revoked_at`."""
    return service.revoke_api_key(session, caller, key_id)
