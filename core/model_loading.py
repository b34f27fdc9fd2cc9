"""Loading models in a process: one load at a time, a shared model loaded once, a failed load retried with backoff.

transformers' `from_pretrained` patches module globals for the length of a load (torch's init functions,
`PreTrainedModel.init_weights` and `tie_weights`) and restores on exit what it saw on entry. Two loads in two threads
interleave those saves and restores and can leave a patch in place for good: every later load in the process then
leaves `lm_head` on the meta device ("Cannot copy out of meta tensor"), and a serving process answers 500 until it
is restarted. Creating any module while a load runs in another thread is exposed too (its init functions may be the
empty ones). So every construction of a model in this project (language models, embedding models, adapters) holds
`exclusive()`, one lock for the whole process, whatever the kind of model.

`SharedModels` keeps models that are only read (the serving engines' base models, the embedding model) and loads
each once. A load that fails is remembered with its error: until its backoff has passed, asking for it again fails
at once with that error (`ModelLoadFailed`, which says when it will be tried again); after that, the next request
tries again. A process never keeps failing on a load that would now succeed, and never hammers one that fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from core.errors import Unavailable

T = TypeVar("T")

# re-entrant: a loader may load another model (a tokenizer, an adapter) inside its own load
_LOAD_LOCK = threading.RLock()


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold the process's one model-loading lock for the block (every model construction, shared or not)."""
    with _LOAD_LOCK:
        yield


class ModelLoadFailed(Unavailable):
    """A model could not be loaded; it is tried again once its backoff has passed."""


@dataclass
class LoadState:
    """What a process knows of one model: loaded, loading, or failed (with the error and when it is tried again)."""

    state: str  # loading | ready | failed
    error: str | None = None
    failures: int = 0
    retry_at: float | None = None  # time.monotonic() of the next try after a failure
    seconds: float | None = None  # how long the successful load took

    def public(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        if self.seconds is not None:
            out["load_seconds"] = round(self.seconds, 2)
        if self.error is not None:
            out |= {
                "error": self.error,
                "failures": self.failures,
                "retry_in_seconds": round(max(0.0, (self.retry_at or 0) - now), 1),
            }
        return out


class SharedModels:
    """Read-only models of a process by key, each loaded once under `exclusive()`; failures retried with backoff."""

    def __init__(
        self, first_backoff: float = 1.0, max_backoff: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.first_backoff, self.max_backoff, self._clock = first_backoff, max_backoff, clock
        self._models: dict[str, Any] = {}
        self._states: dict[str, LoadState] = {}

    def get(self, key: str, loader: Callable[[], T]) -> T:
        """The model under `key`, loading it with `loader` if no one has; raises `ModelLoadFailed` during a failure's
        backoff.
        """
        if key in self._models:  # the fast path: a dict read needs no lock
            return self._models[key]
        with _LOAD_LOCK:
            if key in self._models:
                return self._models[key]
            known = self._states.get(key)
            now = self._clock()
            if known is not None and known.state == "failed" and now < (known.retry_at or 0):
                raise ModelLoadFailed(
                    f"the model {key} could not be loaded ({known.error}); it is tried again in "
                    f"{(known.retry_at or 0) - now:.0f} s",
                    code="model_not_ready",
                )
            failures = known.failures if known is not None else 0
            self._states[key] = LoadState("loading", failures=failures)
            started = self._clock()
            try:
                model = loader()
            except Exception as exc:
                failures += 1
                backoff = min(self.max_backoff, self.first_backoff * 2 ** (failures - 1))
                error = f"{type(exc).__name__}: {exc}"[:500]
                self._states[key] = LoadState(
                    "failed", error=error, failures=failures, retry_at=self._clock() + backoff
                )
                raise ModelLoadFailed(
                    f"the model {key} could not be loaded ({error}); it is tried again in {backoff:.0f} s",
                    code="model_not_ready",
                ) from exc
            self._models[key] = model
            self._states[key] = LoadState("ready", seconds=self._clock() - started)
            return model

    def retry_in(self, key: str) -> float:
        """Seconds until a failed model may be tried again (0 if it may be now)."""
        known = self._states.get(key)
        return max(0.0, (known.retry_at or 0) - self._clock()) if known is not None and known.state == "failed" else 0.0

    def loaded(self, key: str) -> bool:
        return key in self._models

    def states(self) -> dict[str, dict[str, Any]]:
        """Every model this process has been asked for, with its state (for health and readiness endpoints)."""
        now = self._clock()
        return {key: state.public(now) for key, state in sorted(self._states.items())}

    def items(self) -> list[tuple[str, Any]]:
        return list(self._models.items())


SHARED = SharedModels()  # the process's shared models
