"""Logs as JSON lines, each carrying the task, iteration, organization and phase it is about and the trace it belongs
to; `readable` turns such a line back into one line for a person (`make dev`)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

# never mutated: each block sets a new dict (no shared mutable default: `.get({})` where it is read)
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("wlops_log_context")
NOISY_LOGGERS = (
    "httpx",
    "urllib3",
    "filelock",
    "sentence_transformers",
    "transformers",
    "huggingface_hub",
    "temporalio.bridge",
    "alembic",
)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every log record in the block (in this thread, and in threads started with a copy of its context) carries
    `fields`; so does the current trace span, as `wlops.<field>` attributes."""
    fields = {k: v for k, v in fields.items() if v is not None}
    span = trace.get_current_span()
    for name, value in fields.items():
        span.set_attribute(f"wlops.{name}", value)
    token = _context.set({**_context.get({}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Adds the log context, the trace and span ids, and the service to each record."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get({}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id, record.span_id = format(span.trace_id, "032x"), format(span.span_id, "016x")
        record.service = self.service
        return True


def configure_logging(service: str, level: str = "INFO", json_lines: bool = True) -> None:
    """The process's root logger: one handler on stderr, JSON lines (or plain text), with the task context."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter(service))
    if json_lines:
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                timestamp="time",
                rename_fields={"levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # Python's warnings too, as records (not bare lines on stderr)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def readable(line: str) -> str:
    """One JSON log line as a person reads it: time, level, the task it is about, the message, the extras, the logger
    (the service is named beside it by `make dev`); a line that is not one of ours comes back as it was."""
    try:
        record = json.loads(line)
    except ValueError:
        return line.rstrip("\n")
    if not isinstance(record, dict) or "message" not in record:
        return line.rstrip("\n")
    time = str(record.pop("time", ""))[11:19]  # ISO 8601: the time of day
    record.pop("service", None)  # the stack names the service beside each line
    level, logger, message = record.pop("level", ""), record.pop("logger", ""), record.pop("message")
    where = " ".join(f"{k}={record.pop(k)}" for k in ("task_id", "iteration", "phase") if k in record)
    record.pop("org_id", None), record.pop("span_id", None), record.pop("trace_id", None)
    extras = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("taskName", "color_message"))
    return " ".join(
        part for part in (time, f"{level:<7}", f"[{where}]" if where else "", message, extras, f"({logger})") if part
    )
