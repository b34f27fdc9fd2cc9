"""generate_dataset: question/answer pairs written from a knowledge base's chunks, validated, stored as a dataset;
and the projection of a generated dataset's status."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext, Heartbeater, invalid_input
from core.status import DatasetStatus, check_dataset_transition
from db.models import Dataset, KnowledgeBase
from knowledge.index import ChunkRecord
from ml.base_model import SMOLLM2_ALIAS
from ml.examples import examples_to_jsonl
from ml.generation import GeneratedPair, QuestionAnswerGenerator
from schemas.workflow_io import (
    GenerateDatasetInput,
    GenerateDatasetResult,
    RecordDatasetInput,
    RegenerateRowsInput,
    RegenerateRowsResult,
)
from services import regeneration
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
            pairs = self._generator(inp.generator, inp.model_name).generate(index.chunks, inp.questions_per_chunk)
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
            "model_name": inp.model_name,  # how the rows are written again when their chunks change
            "questions_per_chunk": inp.questions_per_chunk,
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

    @activity.defn(name="regenerate_generated_rows")
    def regenerate_generated_rows(self, inp: RegenerateRowsInput) -> RegenerateRowsResult:
        """Rows of the datasets generated from the knowledge base, written from chunks its new version changed, are
        generated again from the changed chunks (services.regeneration)."""
        with Heartbeater():
            return self._regenerate(inp)

    def _regenerate(self, inp: RegenerateRowsInput) -> RegenerateRowsResult:
        from knowledge.embeddings import embed

        both = self.ctx.knowledge_indexes.with_previous(inp.org_id, inp.knowledge_base_id, inp.version)
        if both is None:  # a version was pruned: nothing left to compare
            activity.logger.warning("knowledge base %s: cannot compare its versions", inp.knowledge_base_id)
            return RegenerateRowsResult(removed=0, added=0, datasets=[])
        previous, current = both
        generators: dict[tuple[str, str], QuestionAnswerGenerator] = {}

        def generate(dataset: Dataset, chunks: list[ChunkRecord]) -> list[GeneratedPair]:
            log = dataset.generation_log or {}
            kind, model_name = str(log.get("generator", "local")), str(log.get("model_name", SMOLLM2_ALIAS))
            if (kind, model_name) not in generators:
                generators[kind, model_name] = self._generator(kind, model_name)
            return generators[kind, model_name].generate(chunks, int(log.get("questions_per_chunk", 2)))

        with self.ctx.sessions() as session:
            kb = session.get(KnowledgeBase, inp.knowledge_base_id)
            if kb is None or kb.org_id != inp.org_id:
                return RegenerateRowsResult(removed=0, added=0, datasets=[])
            try:
                done = regeneration.regenerate_rows(
                    session,
                    self.ctx.store,
                    self.ctx.settings,
                    kb,
                    inp.version,
                    previous,
                    current,
                    inp.document_ids,
                    generate,
                    embed,
                )
            except TeacherError as exc:  # a refusal leaves the rows as they are; an outage is retried
                if not exc.retryable:
                    raise invalid_input(str(exc)) from exc
                raise
        activity.logger.info("knowledge base %s version %s: regenerated %s", inp.knowledge_base_id, inp.version, done)
        return RegenerateRowsResult(
            removed=sum(d.removed for d in done),
            added=sum(d.added for d in done),
            datasets=[d.dataset_id for d in done],
        )

    def _generator(self, kind: str, model_name: str) -> QuestionAnswerGenerator:
        if kind == "teacher":
            return TeacherGenerator.from_settings(self.ctx.settings)
        from ml.base_model import load_model_and_tokenizer
        from ml.generation import LocalGenerator

        model, tokenizer = load_model_and_tokenizer(model_name, self.ctx.settings.model_cache_dir)
        return LocalGenerator(model, tokenizer, batch_size=self.ctx.settings.generation_batch_size)
