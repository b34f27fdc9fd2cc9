"""Temporal workflows: orchestration only, deterministic."""

from workflows.dataset_generation import DatasetGenerationWorkflow
from workflows.fine_tuning import FineTuningWorkflow
from workflows.knowledge_ingestion import KnowledgeIngestionWorkflow
from workflows.promotion_gate import PromotionGateWorkflow
from workflows.retraining import RetrainWorkflow

__all__ = ["DatasetGenerationWorkflow", "FineTuningWorkflow", "KnowledgeIngestionWorkflow", "PromotionGateWorkflow", "RetrainWorkflow"]
