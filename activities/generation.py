"""generate_dataset: question/answer pairs written from a knowledge base's chunks, validated, stored as a dataset;
and the projection of a generated dataset's status."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext, Heartbeater, invalid_input
from core.status import DatasetStatus, check_dataset_transition
from db.models import Dataset, KnowledgeBase
from ml.examples import examples_to_jsonl
from schemas.workflow_io import GenerateDatasetInput, GenerateDatasetResult, RecordDatasetInput
from storage.object_store import put_bytes
from teacher import TeacherError, TeacherGenerator


class GenerationActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="record_dataset")
    def record_dataset(self, inp: RecordDatasetInput) -> None:
        with self.ctx.sessions.begin() as session:
            dataset = session.get(Dataset, inp.dataset_id, with_for_update=True)
            if dataset is None:
                return
            current, target = DatasetStatus(dataset.status), DatasetStatus(inp.status)
            if current != target:
                try:
                    check_dataset_transition(current, target)
                except ValueError as exc:
                    raise ApplicationError(
                        f"projection refuses {exc} for dataset {dataset.id}",
                        type="IllegalTransition",
                        non_retryable=True,
                    ) from exc
            dataset.status, dataset.error = target.value, inp.error

    @activity.defn(name="generate_dataset")
    def generate_dataset(self, inp: GenerateDatasetInput) -> GenerateDatasetResult:
        with Heartbeater() as heartbeat:
            return self._generate(inp, heartbeat)

    def _generate(self, inp: GenerateDatasetInput, heartbeat: Heartbeater) -> GenerateDatasetResult:
        from knowledge.embeddings import embed
        from ml.generation import validate

        with self.ctx.sessions() as session:
            kb = session.get(KnowledgeBase, inp.knowledge_base_id)
            dataset = session.get(Dataset, inp.dataset_id)
            if kb is None or kb.org_id != inp.org_id or not kb.index_key:
                raise invalid_input(f"knowledge base {inp.knowledge_base_id} no longer exists or has no index")
            if dataset is None:
                raise invalid_input(f"dataset {inp.dataset_id} was deleted")
            index_key, version, storage_key = kb.index_key, kb.version, dataset.storage_key
        index = self.ctx.knowledge_indexes.get(index_key)
        heartbeat.update(stage=f"writing questions for {len(index.chunks)} chunks")
        try:
            pairs = self._generator(inp).generate(index.chunks, inp.questions_per_chunk)
        except TeacherError as exc:  # a refusal (a wrong key, an unknown model) fails the dataset; an outage is retried
            if not exc.retryable:
                raise invalid_input(str(exc)) from exc
            raise
        heartbeat.update(stage=f"validating {len(pairs)} candidates")
        validated = validate(pairs, index, embed)
        log = {
            "generator": inp.generator,
            "chunks": len(index.chunks),
            "candidates": validated.candidates,
            "accepted": len(validated.examples),
            "yield": validated.yield_rate,
            "rejected": validated.rejected,
            "accepted_by_method": validated.accepted_by_method,
        }
        if not validated.examples:
            raise invalid_input(
                f"no generated example passed validation ({validated.candidates} candidates; "
                f"rejected: {validated.rejected})"
            )
        data = examples_to_jsonl(validated.examples)
        put_bytes(self.ctx.store, storage_key, data)
        with self.ctx.sessions.begin() as session:
            dataset = session.get(Dataset, inp.dataset_id)
            if dataset is not None:
                dataset.size_bytes, dataset.sample_count, dataset.generation_log = (
                    len(data),
                    len(validated.examples),
                    log,
                )
                dataset.source_knowledge_base_version = version
        activity.logger.info(
            "generated dataset %s from knowledge base %s v%s: %s", inp.dataset_id, inp.knowledge_base_id, version, log
        )
        return GenerateDatasetResult(
            examples=len(validated.examples),
            candidates=validated.candidates,
            rejected=validated.rejected,
            accepted_by_method=validated.accepted_by_method,
            knowledge_base_version=version,
        )

    def _generator(self, inp: GenerateDatasetInput):
        if inp.generator == "teacher":
            return TeacherGenerator.from_settings(self.ctx.settings)
        from ml.base_model import load_model_and_tokenizer
        from ml.generation import LocalGenerator

        model, tokenizer = load_model_and_tokenizer(inp.model_name, self.ctx.settings.model_cache_dir)
        return LocalGenerator(model, tokenizer, batch_size=self.ctx.settings.generation_batch_size)
