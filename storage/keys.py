"""The key layout of object storage. Keys are built only from server-generated ids."""

from __future__ import annotations

import re

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _safe(part: str) -> str:
    if not _ID.fullmatch(part):
        raise ValueError(f"not a valid id for a storage key: {part!r}")
    return part


def dataset_prefix(org_id: str, dataset_id: str) -> str:
    return f"datasets/{_safe(org_id)}/{_safe(dataset_id)}/"


def optimized_prefix(dataset_id: str) -> str:
    return f"optimized/{_safe(dataset_id)}/"


def model_prefix(task_id: str, iteration: int) -> str:
    return f"models/{_safe(task_id)}/iter-{int(iteration)}/"


def evaluation_prefix(task_id: str, iteration: int | None = None) -> str:
    base = f"evaluations/{_safe(task_id)}/"
    return base if iteration is None else f"{base}iter-{int(iteration)}/"


def iteration_prefixes(task_id: str, iteration: int) -> list[str]:
    """Every prefix that holds artifacts of one iteration of a task (for compensation)."""
    return [model_prefix(task_id, iteration), evaluation_prefix(task_id, iteration)]
