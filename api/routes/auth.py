from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsDep
from api.security import AnyCaller
from core.errors import Unauthenticated
from schemas.api import LoginRequest, Me, OrgSwitchRequest, RefreshRequest, TokenPair
from services import identity as service

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/login", response_model=TokenPair)
async def login(request: Request, session: SessionDep, settings: SettingsDep, body: LoginRequest) -> TokenPair:
    """Username and password for a short-lived access token and a refresh token."""
    throttle = request.app.state.login_throttle
    client = client_address(request)
    throttle.check(body.username, client)
    try:  # argon2 verification is deliberately slow: keep it off the event loop
        tokens, caller = await run_in_threadpool(
            service.login, session, settings, body.username, body.password, body.org
        )
    except Unauthenticated:
        throttle.failed(body.username, client)
        raise
    throttle.succeeded(body.username, client)
    request.state.caller = caller  # for the audit log
    return tokens


@router.post("/refresh", response_model=TokenPair)
def refresh(session: SessionDep, settings: SettingsDep, body: RefreshRequest) -> TokenPair:
    """A refresh token for a new pair (same organization; the role is read again)."""
    return service.refresh(session, settings, body.refresh_token)


@router.post("/switch", response_model=TokenPair)
def switch(
    request: Request, caller: AnyCaller, session: SessionDep, settings: SettingsDep, body: OrgSwitchRequest
) -> TokenPair:
    """A new token pair for another of your organizations (listed by GET /api/v1/auth/me), without the password again;
    the tokens you hold stay valid. API keys cannot switch (403)."""
    tokens, entered = service.switch_org(session, settings, caller, body.org_id)
    request.state.caller = entered  # audited in the organization entered, like a login
    return tokens


@router.get("/me", response_model=Me)
def me(caller: AnyCaller, session: SessionDep) -> Me:
    return service.me(session, caller)


@router.post("/logout", status_code=204)
def logout(caller: AnyCaller, session: SessionDep) -> None:
    """Revoke every access and refresh token of the caller."""
    service.logout(session, caller)
