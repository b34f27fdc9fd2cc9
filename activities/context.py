"""What every activity needs: settings, object storage and database sessions, built once per worker."""

from __future__ import annotations

import contextvars
import json
import threading
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from db.session import get_sessionmaker
from services.knowledge import IndexCache
from services.task_events import ProgressRecorder
from storage.object_store import ObjectNotFound, ObjectStore, get_bytes, object_store_from_settings, put_bytes

Model = TypeVar("Model", bound=BaseModel)
PROGRESS_FIELDS = ("stage", "step", "total_steps", "loss", "tokens_per_second", "done", "total")


@dataclass
class ActivityContext:
    settings: Settings
    store: ObjectStore
    sessions: sessionmaker

    @cached_property
    def knowledge_indexes(self) -> IndexCache:
        """Knowledge-base index versions this worker has loaded (a version never changes, so they are kept)."""
        return IndexCache(self.store)

    @classmethod
    def from_settings(cls, settings: Settings) -> ActivityContext:
        """Clients of the configured storage and database (brought up to date where the worker process starts)."""
        return cls(settings, object_store_from_settings(settings), get_sessionmaker(settings.resolved_database_url))

    def progress_recorder(self, task_id: str, iteration: int, phase: str) -> ProgressRecorder:
        """Writes a running phase's progress as the task's events, at most every `progress_event_seconds`."""
        return ProgressRecorder(self.sessions, task_id, iteration, phase, self.settings.progress_event_seconds)

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(get_bytes(self.store, key))
        except ObjectNotFound as exc:
            raise ApplicationError(f"missing artifact {key}", type="MissingArtifact", non_retryable=True) from exc

    def write_json(self, key: str, data: Any) -> str:
        put_bytes(self.store, key, json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"))
        return key

    def read_model(self, key: str, model: type[Model]) -> Model:
        """A stored report or record, validated into its typed model."""
        return model.model_validate(self.read_json(key))

    def write_model(self, key: str, value: BaseModel) -> str:
        return self.write_json(key, value.model_dump(mode="json"))


def invalid_input(message: str) -> ApplicationError:
    """A user mistake: retrying cannot help, so the task fails at once with this message."""
    return ApplicationError(message, type="InvalidInput", non_retryable=True)


MAX_BEAT_SECONDS = 5.0


def beat_interval(heartbeat_timeout: timedelta | None) -> float:
    """Seconds between a Heartbeater's beats: a third of the activity's heartbeat timeout, 5 at most."""
    if not heartbeat_timeout:
        return MAX_BEAT_SECONDS
    return min(MAX_BEAT_SECONDS, heartbeat_timeout.total_seconds() / 3)


class Heartbeater:
    """Heartbeats the latest progress from a background thread, three times per heartbeat timeout (every
    5 s at most: `beat_interval`).

    A long generation batch or training step must not look like a dead worker; the thread runs in
    the activity's context, so cancellation still reaches the activity at its next safe point.
    Beating once per timeout raced it: a training step slower than the timeout (bf16 on a CPU
    without native bf16, at the tests' 5 s) failed the activity with "Heartbeat timeout".
    """

    def __init__(self, progress: ProgressRecorder | None = None):
        self.progress = progress  # also written as the task's progress events (throttled), for the live event stream
        self.details: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, **details: Any) -> None:
        self.details = details
        activity.heartbeat(details)
        if self.progress is not None:
            try:
                self.progress(**{k: v for k, v in details.items() if k in PROGRESS_FIELDS})
            except SQLAlchemyError as exc:  # live progress is a view: a database hiccup must not fail a long phase
                activity.logger.warning("could not record progress: %s", exc)

    def _run(self) -> None:
        interval = beat_interval(activity.info().heartbeat_timeout)
        while not self._stop.wait(interval):
            activity.heartbeat(self.details)

    def __enter__(self) -> Heartbeater:
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,), daemon=True, name="heartbeater"
        )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
