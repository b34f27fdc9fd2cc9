"""`wlops user create` and the development owner that `make demo` / `make dev` create."""

from __future__ import annotations

from auth.accounts import UserSetup, ensure_user
from core.access import Role
from core.settings import Settings
from db.session import get_sessionmaker


def create_user(settings: Settings, username: str, password: str, org: str, role: Role) -> UserSetup:
    """Create the user (and the organization if it does not exist) with `role` in it, in an up-to-date database."""
    with get_sessionmaker(settings.resolved_database_url)() as session:
        setup = ensure_user(session, username, password, org, role)
        session.commit()
        return setup


def ensure_dev_owner(settings: Settings) -> UserSetup | None:
    """The development owner from WLOPS_DEV_USERNAME / WLOPS_DEV_PASSWORD (development mode only)."""
    if settings.environment != "development":
        return None
    return create_user(settings, settings.dev_username, settings.dev_password, settings.dev_org, Role.OWNER)


def login_hint(settings: Settings) -> str:
    base = f"http://{settings.api_host}:{settings.api_port}"
    return (
        f"log in as {settings.dev_username!r} (password {settings.dev_password!r}, "
        f"organization {settings.dev_org!r}):\n"
        f"    curl -s -X POST {base}/api/v1/auth/login -H 'content-type: application/json' "
        f'-d \'{{"username": "{settings.dev_username}", "password": "{settings.dev_password}"}}\'\n'
        f"  then send `Authorization: Bearer <access_token>` (or use Authorize at {base}/docs)"
    )
