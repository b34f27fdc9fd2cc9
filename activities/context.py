"""What every activity needs: settings, object storage and database sessions, built once per worker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import sessionmaker
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from db.session import get_sessionmaker, migrate
from storage.object_store import ObjectNotFound, ObjectStore, get_bytes, object_store_from_settings, put_bytes


@dataclass
class ActivityContext:
    settings: Settings
    store: ObjectStore
    sessions: sessionmaker

    @classmethod
    def from_settings(cls, settings: Settings) -> "ActivityContext":
        migrate(settings.resolved_database_url)
        return cls(settings, object_store_from_settings(settings), get_sessionmaker(settings.resolved_database_url))

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(get_bytes(self.store, key))
        except ObjectNotFound as exc:
            raise ApplicationError(f"missing artifact {key}", type="MissingArtifact", non_retryable=True) from exc

    def write_json(self, key: str, data: Any) -> str:
        put_bytes(self.store, key, json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"))
        return key


def invalid_input(message: str) -> ApplicationError:
    """A user mistake: retrying cannot help, so the task fails at once with this message."""
    return ApplicationError(message, type="InvalidInput", non_retryable=True)
