"""An organization's judge: the OpenAI-compatible endpoint that grades suites' `judge` assertions. Its URL must name a
host the server allows (`WLOPS_JUDGE_ALLOWED_HOSTS`: the workers call it, so the operator decides what they may
reach); its API key is sealed (`auth.sealed`) and never shown again."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from auth.sealed import Unreadable, seal, unseal
from core.errors import Invalid
from core.settings import Settings
from db.models import Organization
from schemas.api import JudgePublic, JudgeSet


def allowed_hosts(settings: Settings) -> set[str]:
    return {h.strip().lower() for h in settings.judge_allowed_hosts.split(",") if h.strip()}


def judge_public(org: Organization) -> JudgePublic:
    return JudgePublic(
        org_id=org.id, url=org.judge_url, model=org.judge_model, api_key_set=org.judge_api_key_sealed is not None
    )


def host_of(url: str) -> str:
    """The URL's host, lower case; Invalid for a URL that cannot be read."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError as exc:
        raise Invalid(f"url: {exc}") from exc


def set_judge(session: Session, settings: Settings, org: Organization, body: JudgeSet) -> Organization:
    """Point the organization's judge at `body.url`, or Invalid naming a host the server does not allow."""
    host, allowed = host_of(body.url), allowed_hosts(settings)
    if host not in allowed:
        raise Invalid(
            f"url: host {host!r} is not one the server allows a judge on; its operator lists them in "
            f"WLOPS_JUDGE_ALLOWED_HOSTS (now: {', '.join(sorted(allowed)) or 'none'})"
        )
    org.judge_url, org.judge_model = body.url, body.model
    org.judge_api_key_sealed = seal(settings.secret_key, body.api_key) if body.api_key else None
    session.commit()
    return org


def clear_judge(session: Session, org: Organization) -> None:
    org.judge_url = org.judge_model = org.judge_api_key_sealed = None
    session.commit()


def judge_endpoint(settings: Settings, org: Organization) -> tuple[str, str, str | None] | None:
    """(url, model, API key) of the organization's judge, None without one; Invalid when its key cannot be read, or
    its host is no longer allowed."""
    if not org.judge_url or not org.judge_model:
        return None
    if host_of(org.judge_url) not in allowed_hosts(settings):
        raise Invalid(f"the judge's host in {org.judge_url} is no longer in WLOPS_JUDGE_ALLOWED_HOSTS: set it again")
    try:
        key = unseal(settings.secret_key, org.judge_api_key_sealed) if org.judge_api_key_sealed else None
    except Unreadable as exc:
        raise Invalid("the judge's API key was sealed under another WLOPS_SECRET_KEY: set the judge again") from exc
    return org.judge_url, org.judge_model, key
