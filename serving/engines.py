"""The engines of the serving process: one per base model, its model loaded on first use."""

from __future__ import annotations

import logging
import threading
from typing import Any

from core.model_loading import SHARED, ModelLoadFailed, SharedModels
from core.settings import Settings
from ml.base_model import load_model_and_tokenizer
from serving.engine import AdapterEngine

logger = logging.getLogger(__name__)


class Engines:
    """One engine per base model, its model loaded on first use (a request that needs it waits for the load), once per
    process, under the process's one model-loading lock; a failed load answers 503 with its error until its backoff has
    passed, then the next request tries again (`core.model_loading`)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.models = SharedModels()

    def get(self, base_model: str) -> AdapterEngine:
        return self.models.get(base_model, lambda: self._start(base_model))

    def _start(self, base_model: str) -> AdapterEngine:
        model, tokenizer = load_model_and_tokenizer(base_model, self.settings.model_cache_dir)
        return AdapterEngine(
            model,
            tokenizer,
            max_adapters=self.settings.serve_max_adapters,
            max_batch=self.settings.serve_max_batch,
            batch_window=self.settings.serve_batch_window_ms / 1000,
            precision=self.settings.inference_precision,
        )

    def warm(self, base_models: list[str], stopping: threading.Event) -> None:
        """Load each base model now (the process's start), trying a failed one again after its backoff until it
        loads."""
        for name in base_models:
            while not stopping.is_set():
                try:
                    self.get(name)
                    break
                except ModelLoadFailed as exc:
                    logger.warning("warming %s: %s", name, exc.message)
                    stopping.wait(self.models.retry_in(name))

    def states(self) -> dict[str, dict[str, Any]]:
        """Each base model asked for, and the embedding model when retrieval has needed it: loading, ready or failed."""
        return {**self.models.states(), **SHARED.states()}

    def close(self) -> None:
        for _, engine in self.models.items():
            engine.close()
