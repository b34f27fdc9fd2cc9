"""KnowledgeIngestionWorkflow: one per knowledge base (id `kb-<knowledge base id>`), the only writer of its status.

Uploads and deletions reach it as `documents_changed` signals (sent with signal-with-start, so the first change
starts it). Changes that arrive while a build runs are queued and built next, never lost and never raced: a
build indexes exactly the documents the knowledge base holds when it starts, reusing what the previous version
already indexed, so a change that arrives during it is picked up by the following build. A build starts once
changes have paused for `settle_seconds`, so a burst of uploads makes one build. With nothing to do for
`idle_seconds` the run ends; it continues-as-new after `builds_per_run` builds. After a build that replaced a document
with a new version, the dataset rows its new text contradicts are marked stale, and the rows of datasets generated from
the knowledge base that were written from chunks it changed are generated again from the changed chunks, before the
tasks that follow the knowledge base are told to re-train.

    CREATED | READY | BUILD_FAILED --change--> REBUILD_REQUIRED --> BUILDING --> READY (or REBUILD_REQUIRED if
    changes queued meanwhile, or BUILD_FAILED; the previous version still answers searches)
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.generation import GenerationActivities
    from activities.knowledge import KnowledgeActivities
    from activities.retraining import RetrainingActivities
    from core.settings import TASK_QUEUE_BOOKKEEPING, TASK_QUEUE_EVALUATE, TASK_QUEUE_KNOWLEDGE
    from core.status import KnowledgeBaseStatus, check_knowledge_base_transition
    from schemas.workflow_io import (
        BuildKnowledgeIndexInput,
        BuildKnowledgeIndexResult,
        DocumentsChanged,
        IngestionInput,
        IngestionProgress,
        IngestionResult,
        MarkStaleRowsInput,
        NotifyFollowersInput,
        RecordKnowledgeBaseInput,
        RegenerateRowsInput,
    )
    from workflows.lifecycle import Lifecycle, PhaseOptions, failure_message, wait_until_quiet

K = KnowledgeBaseStatus
PROJECTION_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10)


@workflow.defn(name="KnowledgeIngestionWorkflow")
class KnowledgeIngestionWorkflow:
    def __init__(self) -> None:
        self.lifecycle = Lifecycle(K.CREATED, check_knowledge_base_transition, self._project)
        self._knowledge_base_id = ""
        self._pending: list[str] = []
        self._builds = 0
        self._version = 0
        self._last: BuildKnowledgeIndexResult | None = None

    @workflow.signal
    def documents_changed(self, change: DocumentsChanged) -> None:
        self._pending.extend(i for i in change.document_ids if i not in self._pending)

    @workflow.query
    def progress(self) -> IngestionProgress:
        return IngestionProgress(
            status=self.lifecycle.status.value,
            pending_documents=list(self._pending),
            builds=self._builds,
            version=self._version,
            last_build=self._last,
        )

    @workflow.run
    async def run(self, inp: IngestionInput) -> IngestionResult:
        self._knowledge_base_id = inp.knowledge_base_id
        self.lifecycle.status = K(inp.status)
        self._pending.extend(i for i in inp.pending if i not in self._pending)
        options = PhaseOptions(
            task_queue=TASK_QUEUE_KNOWLEDGE,
            start_to_close=timedelta(seconds=inp.build_seconds),
            retry=RetryPolicy(
                initial_interval=timedelta(seconds=inp.retry_initial_seconds), maximum_attempts=inp.max_attempts
            ),
            heartbeat=timedelta(seconds=inp.heartbeat_seconds),
        )
        while True:
            try:
                await workflow.wait_condition(lambda: bool(self._pending), timeout=timedelta(seconds=inp.idle_seconds))
            except TimeoutError:
                if not self._pending:  # a change that raced the timeout is still built
                    return IngestionResult(
                        knowledge_base_id=inp.knowledge_base_id,
                        builds=self._builds,
                        version=self._version,
                        status=self.lifecycle.status.value,
                    )
            if self.lifecycle.status != K.REBUILD_REQUIRED:
                await self.lifecycle.record(K.REBUILD_REQUIRED)
            await wait_until_quiet(lambda: len(self._pending), inp.settle_seconds)  # a burst of uploads makes one build
            self._pending = []
            await self._build(inp, options)
            if self._builds >= inp.builds_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    dataclasses.replace(inp, status=self.lifecycle.status.value, pending=list(self._pending))
                )

    async def _build(self, inp: IngestionInput, options: PhaseOptions) -> None:
        try:
            result: BuildKnowledgeIndexResult = await self.lifecycle.run_phase(
                K.BUILDING,
                KnowledgeActivities.build_knowledge_index,
                BuildKnowledgeIndexInput(knowledge_base_id=inp.knowledge_base_id, org_id=inp.org_id),
                options,
            )
        except ActivityError as err:
            await self.lifecycle.record(K.BUILD_FAILED, error=failure_message(err))
            return
        self._builds += 1
        self._version, self._last = result.version, result
        await self.lifecycle.record(K.REBUILD_REQUIRED if self._pending else K.READY)
        if result.replaced_documents and workflow.patched("mark-stale-rows"):
            await self._mark_stale_rows(inp, options, result)  # before the followers re-train on those rows
        if result.replaced_documents and workflow.patched("regenerate-generated-rows"):
            await self._regenerate_rows(inp, result)  # before the followers re-train on those rows too
        if result.changed and workflow.patched("notify-retrain-followers"):
            await self._notify_followers(inp, result.version)

    async def _mark_stale_rows(
        self, inp: IngestionInput, options: PhaseOptions, result: BuildKnowledgeIndexResult
    ) -> None:
        """The dataset rows that the replaced documents' new text contradicts are marked stale (excluded until a user
        confirms or corrects them). The index is built whatever happens here."""
        try:
            await workflow.execute_activity_method(
                KnowledgeActivities.mark_stale_rows,
                MarkStaleRowsInput(
                    knowledge_base_id=inp.knowledge_base_id,
                    org_id=inp.org_id,
                    version=result.version,
                    document_ids=list(result.replaced_documents),
                ),
                task_queue=TASK_QUEUE_KNOWLEDGE,
                start_to_close_timeout=options.start_to_close,
                retry_policy=options.retry,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "could not mark the rows that knowledge base %s's new documents contradict: %s",
                inp.knowledge_base_id,
                failure_message(err),
            )

    async def _regenerate_rows(self, inp: IngestionInput, result: BuildKnowledgeIndexResult) -> None:
        """The rows of the datasets generated from this knowledge base that were written from chunks the replaced
        documents changed are generated again from the changed chunks, on the evaluate pool (it runs a model). The
        index is built whatever happens here."""
        try:
            await workflow.execute_activity_method(
                GenerationActivities.regenerate_generated_rows,
                RegenerateRowsInput(
                    knowledge_base_id=inp.knowledge_base_id,
                    org_id=inp.org_id,
                    version=result.version,
                    document_ids=list(result.replaced_documents),
                ),
                task_queue=TASK_QUEUE_EVALUATE,
                start_to_close_timeout=timedelta(seconds=inp.regenerate_seconds),
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_seconds),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            workflow.logger.warning(
                "could not generate again the rows of knowledge base %s's changed chunks: %s",
                inp.knowledge_base_id,
                failure_message(err),
            )

    async def _notify_followers(self, inp: IngestionInput, version: int) -> None:
        """Tasks that follow this knowledge base re-train (RetrainWorkflow). The index is built whatever happens
        here."""
        try:
            await workflow.execute_activity_method(
                RetrainingActivities.notify_followers,
                NotifyFollowersInput(knowledge_base_id=inp.knowledge_base_id, org_id=inp.org_id, version=version),
                task_queue=TASK_QUEUE_BOOKKEEPING,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=PROJECTION_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "could not notify the tasks following knowledge base %s: %s",
                inp.knowledge_base_id,
                failure_message(err),
            )

    async def _project(self, status: KnowledgeBaseStatus, error: str | None = None, **_: Any) -> None:
        await workflow.execute_local_activity_method(
            KnowledgeActivities.record_knowledge_base,
            RecordKnowledgeBaseInput(knowledge_base_id=self._knowledge_base_id, status=status.value, error=error),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PROJECTION_RETRY,
        )
