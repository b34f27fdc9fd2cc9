"""Temporal workflows: orchestration only, deterministic."""

from workflows.fine_tuning import FineTuningWorkflow

__all__ = ["FineTuningWorkflow"]
