"""The workflows as their callers see them: each one's name, input, result, signals, updates and queries, so the API,
services and activities start, signal, update and query a workflow by its methods, never by a string.

Why declarations here and not the workflow classes themselves: the implementations (`workflows/`) import the
activities they run, and the activities import `services/`, so a service or an activity that imported a workflow
class would close a circle (and break the layers in pyproject.toml). A caller needs only the workflow's signatures,
which are declared here once; `tests/workflows/test_workflow_interfaces.py` checks that each implementation registers
exactly these names and types. Each class is a Protocol: it is never instantiated or run, only referenced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from temporalio import workflow

from schemas.workflow_io import (
    ConcludeGateResult,
    DocumentsChanged,
    FineTuningInput,
    FineTuningResult,
    GenerateDatasetResult,
    GenerationInput,
    IngestionInput,
    IngestionProgress,
    IngestionResult,
    KnowledgeChanged,
    PromotionGateInput,
    ReleaseControl,
    ReleaseInput,
    ReleaseResult,
    RetentionInput,
    RetentionResult,
    RetrainInput,
    RetrainPending,
    RetrainResult,
    RunSuiteResult,
    SuiteRunInput,
    TaskProgress,
)


def signal_name(signal: Callable[..., None]) -> str:
    """The name a signal method is registered under (signal-with-start takes the signal by name)."""
    return workflow._SignalDefinition.must_name_from_fn_or_str(signal)


# ---------------------------------------------------------------- a task's fine-tuning (id = the task's id)


@workflow.defn(name="FineTuningWorkflow")
class FineTuningWorkflow(Protocol):
    @workflow.run
    async def run(self, task: FineTuningInput) -> FineTuningResult: ...

    @workflow.signal
    def pause(self) -> None:
        """Fire-and-forget pause (e.g. from the Temporal Web UI); the API sends the `request_pause` update."""

    @workflow.signal
    def resume(self) -> None: ...

    @workflow.update(name="request_pause")
    def request_pause(self) -> str:
        """Accepted (returns the status it was accepted in) or refused by the workflow's validator."""
        ...

    @workflow.update(name="request_resume")
    def request_resume(self) -> str:
        """Accepted (returns the phase it goes back to) or refused by the workflow's validator."""
        ...

    @workflow.update(name="request_cancel")
    def request_cancel(self) -> str:
        """Accepted (the caller then cancels the workflow) or refused by the workflow's validator."""
        ...

    @workflow.query
    def progress(self) -> TaskProgress: ...


# ---------------------------------------------------------------- knowledge bases and the datasets generated from them


def ingestion_workflow_id(knowledge_base_id: str) -> str:
    return f"kb-{knowledge_base_id}"


@workflow.defn(name="KnowledgeIngestionWorkflow")
class KnowledgeIngestionWorkflow(Protocol):
    @workflow.run
    async def run(self, inp: IngestionInput) -> IngestionResult: ...

    @workflow.signal
    def documents_changed(self, change: DocumentsChanged) -> None: ...

    @workflow.query
    def progress(self) -> IngestionProgress: ...


def generation_workflow_id(dataset_id: str) -> str:
    return f"gen-{dataset_id}"


@workflow.defn(name="DatasetGenerationWorkflow")
class DatasetGenerationWorkflow(Protocol):
    @workflow.run
    async def run(self, inp: GenerationInput) -> GenerateDatasetResult: ...


# ---------------------------------------------------------------- incremental re-training, the registry's gate


def retrain_workflow_id(task_id: str) -> str:
    return f"retrain-{task_id}"


@workflow.defn(name="RetrainWorkflow")
class RetrainWorkflow(Protocol):
    @workflow.run
    async def run(self, inp: RetrainInput) -> RetrainResult: ...

    @workflow.signal
    def knowledge_changed(self, change: KnowledgeChanged) -> None: ...

    @workflow.query
    def pending(self) -> RetrainPending: ...


@workflow.defn(name="RetentionWorkflow")
class RetentionWorkflow(Protocol):
    @workflow.run
    async def run(self, inp: RetentionInput) -> RetentionResult: ...


RETENTION_SCHEDULE_ID = "retention"  # the schedule that starts a RetentionWorkflow every retention_interval_hours


@workflow.defn(name="PromotionGateWorkflow")
class PromotionGateWorkflow(Protocol):
    @workflow.run
    async def run(self, inp: PromotionGateInput) -> ConcludeGateResult: ...

    @workflow.query
    def status(self) -> str: ...


@workflow.defn(name="SuiteRunWorkflow")
class SuiteRunWorkflow(Protocol):
    @workflow.run
    async def run(self, inp: SuiteRunInput) -> RunSuiteResult: ...


# ---------------------------------------------------------------- releases (id = release-<release id>)


@workflow.defn(name="ReleaseWorkflow")
class ReleaseWorkflow(Protocol):
    @workflow.run
    async def run(self, inp: ReleaseInput) -> ReleaseResult: ...

    @workflow.update(name="promote")
    def promote(self, command: ReleaseControl) -> ReleaseResult:
        """Skip the remaining steps and move the alias now; the result is the release once it is applied."""
        ...

    @workflow.update(name="pause")
    def pause(self, command: ReleaseControl) -> ReleaseResult: ...

    @workflow.update(name="resume")
    def resume(self, command: ReleaseControl) -> ReleaseResult: ...

    @workflow.update(name="abort")
    def abort(self, command: ReleaseControl) -> ReleaseResult: ...

    @workflow.query
    def state(self) -> ReleaseResult: ...
