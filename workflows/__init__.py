"""Temporal workflows: orchestration only, deterministic."""

from workflows.fine_tuning import FineTuningWorkflow
from workflows.knowledge_ingestion import KnowledgeIngestionWorkflow

__all__ = ["FineTuningWorkflow", "KnowledgeIngestionWorkflow"]
