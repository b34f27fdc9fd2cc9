"""The HTTP client of the resource commands: which API, the stored login for it, and the API's errors as `ApiError`.

Talks to WLOps only over HTTP, so it works against any deployment; of the server's code it reads only `core.settings`
(`WLOPS_API_URL`, `WLOPS_CONFIG_DIR`, `WLOPS_API_KEY`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from core.settings import Settings

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """The API refused a request (its status and message), or could not be reached (status None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def error_message(response: httpx.Response) -> str:
    """The API's own words: `detail`, or for a 422 each field with its message."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # validation errors: [{"loc": ["body", "field"], "msg": ...}, ...]
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'request'}: {e.get('msg')}" for e in detail
        )
    return str(detail) if detail else f"{response.status_code} {response.reason_phrase}"


class Credentials:
    """`credentials.json`: the tokens of each API logged in to (keyed by its URL) and the current API.

    Readable only by its owner.
    """

    def __init__(self, config_dir: Path):
        self.path = config_dir.expanduser() / "credentials.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.setdefault("apis", {})

    @property
    def current(self) -> str | None:
        return self.data.get("current")

    def tokens(self, api_url: str) -> dict | None:
        return self.data["apis"].get(api_url)

    def store(self, api_url: str, tokens: dict, *, current: bool = False) -> None:
        self.data["apis"][api_url] = tokens
        if current:
            self.data["current"] = api_url
        self.save()

    def forget(self, api_url: str) -> None:
        self.data["apis"].pop(api_url, None)
        if self.current == api_url:
            self.data.pop("current")
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        # created 0600 from the start (never world-readable, not even for a moment), then swapped in whole
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            json.dump(self.data, fh, indent=2)
        os.chmod(partial, 0o600)
        os.replace(partial, self.path)


class StoredLogin(httpx.Auth):
    """Send the stored access token; when it has expired (401), refresh the pair once, keep it, and retry."""

    def __init__(self, credentials: Credentials, api_url: str):
        self.credentials, self.api_url = credentials, api_url

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        tokens = self.credentials.tokens(self.api_url)
        if tokens is None:  # logged out since: the request goes as it is
            yield request
            return
        request.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        response = yield request
        if response.status_code != 401:
            return
        refreshed = yield httpx.Request(
            "POST", f"{self.api_url}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        refreshed.read()  # only this body: reading every response would swallow an event stream
        if refreshed.status_code == 200:
            self.credentials.store(self.api_url, {**tokens, **refreshed.json()})
            request.headers["Authorization"] = f"Bearer {refreshed.json()['access_token']}"
            yield request


class ApiClient:
    """One API: its base URL and credentials; `call` returns the decoded JSON or raises `ApiError`."""

    def __init__(self, api_url: str | None = None, settings: Settings | None = None):
        settings = settings or Settings()  # read now, not the cached process settings: the environment decides
        self.credentials = Credentials(settings.config_dir)
        self.url = (api_url or settings.api_url or self.credentials.current or DEFAULT_API_URL).rstrip("/")
        self.stored_login = StoredLogin(self.credentials, self.url) if self.credentials.tokens(self.url) else None
        # a key wins over a stored login
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            auth=None if settings.api_key else self.stored_login,
            timeout=httpx.Timeout(60, read=120),
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; the JSON answer (None for 204), or `ApiError` with the API's message."""
        with self.reaching():
            response = self.http.request(method, path, **kwargs)
        self.check(response)
        return response.json() if response.content else None

    def check(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            raise ApiError(error_message(response), response.status_code)

    @contextmanager
    def reaching(self) -> Iterator[None]:
        """A failure to reach the API becomes an `ApiError` that names it."""
        try:
            yield
        except httpx.TransportError as exc:
            raise ApiError(f"could not reach the API at {self.url}: {exc}") from exc

    def login(self, username: str, password: str, org: str | None) -> dict:
        tokens = self.call(
            "POST", "/api/v1/auth/login", json={"username": username, "password": password, "org": org}, auth=None
        )
        self.credentials.store(self.url, {**tokens, "username": username}, current=True)
        # from now on this client calls as the user who logged in (an API key wins)
        if "Authorization" not in self.http.headers:
            self.stored_login = self.http.auth = StoredLogin(self.credentials, self.url)
        return tokens

    def logout(self) -> bool:
        """Revoke the stored login's tokens and forget them; False when there was none for this API."""
        if self.stored_login is None:
            return False
        try:
            self.call("POST", "/api/v1/auth/logout", auth=self.stored_login)
        except ApiError as exc:
            if exc.status != 401:  # already expired or revoked: forgetting it is all there is to do
                raise
        self.credentials.forget(self.url)
        return True
