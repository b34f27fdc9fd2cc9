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


def optimized_dataset_id(task_id: str, iteration: int) -> str:
    """The id of a task iteration's training set: deterministic, so a retried attempt overwrites its own row instead of
    adding one.
    """
    return f"{_safe(task_id)}-opt{int(iteration)}"


def first_splits_key(task_id: str) -> str:
    """Where a task's first optimization writes its locked splits (and where an incremental task's copy of its parent's
    is
    put).
    """
    return optimized_prefix(optimized_dataset_id(task_id, 1)) + "splits.json"


def contexts_key(dataset_id: str) -> str:
    """The passages retrieved for the held-out questions of the iteration that wrote this training set (with a knowledge
    base).
    """
    return optimized_prefix(dataset_id) + "contexts.json"


def model_prefix(task_id: str, iteration: int) -> str:
    return f"models/{_safe(task_id)}/iter-{int(iteration)}/"


def evaluation_prefix(task_id: str, iteration: int | None = None) -> str:
    base = f"evaluations/{_safe(task_id)}/"
    return base if iteration is None else f"{base}iter-{int(iteration)}/"


def iteration_prefixes(task_id: str, iteration: int) -> list[str]:
    """Every prefix that holds artifacts of one iteration of a task (for compensation)."""
    return [model_prefix(task_id, iteration), evaluation_prefix(task_id, iteration)]


def knowledge_base_prefix(org_id: str, knowledge_base_id: str) -> str:
    return f"knowledge/{_safe(org_id)}/{_safe(knowledge_base_id)}/"


def knowledge_document_key(
    org_id: str, knowledge_base_id: str, document_id: str, version: int, media_suffix: str
) -> str:
    """Where one version of a document's bytes is kept (the suffix is the type's, never the uploaded name)."""
    document = f"documents/{_safe(document_id)}/v{int(version)}"
    return f"{knowledge_base_prefix(org_id, knowledge_base_id)}{document}/source.{_safe(media_suffix)}"


def knowledge_index_prefix(org_id: str, knowledge_base_id: str, version: int) -> str:
    """The folder of one index version: chunk table, vectors, FAISS index, manifest."""
    return f"{knowledge_base_prefix(org_id, knowledge_base_id)}index/v{int(version)}/"
