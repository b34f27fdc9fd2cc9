"""optimize_dataset: clean and split the upload (first iteration) or target the last round's bad cases."""

from __future__ import annotations

import functools
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import select
from temporalio import activity

from activities.context import ActivityContext, invalid_input
from db.models import Dataset, DatasetVersion, KnowledgeBase, MLTask
from ml.examples import DatasetFormatError, Example, examples_to_jsonl
from ml.focused_context import focused
from ml.generation import QuestionAnswerGenerator
from ml.grounded_targeting import changed_fact_examples, grounded_examples, random_chunk_examples
from ml.optimizer import (
    CORRECTION_WEIGHT,
    CleaningResult,
    OptimizationLog,
    SplitConfig,
    Splits,
    TargetingConfig,
    clean_dataset,
    corrections_for_training,
    find_leaks,
    split_examples,
    target_bad_cases,
    within_budget,
)
from ml.retrieval_context import ContextConfig, held_out_contexts, retrieval_quality, training_contexts
from schemas.reports import EvaluationReport, ExampleContext, RetrievedContexts
from schemas.workflow_io import OptimizeInput, OptimizeResult
from storage import keys
from storage.object_store import ObjectNotFound, get_file, put_bytes


class OptimizeActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="optimize_dataset")
    def optimize_dataset(self, inp: OptimizeInput) -> OptimizeResult:
        # the version the task pinned, whatever the dataset's head is now
        source_key, source_format, org_id = self._version_file(inp.dataset_id, inp.dataset_version)

        # the local model writes generated examples' questions: loaded at most once, and only when something generates
        generator = functools.cache(lambda: self._generator(inp))
        if inp.splits_key is None:
            splits, log = self._clean_and_split(source_key, source_format)
            train = splits.train
        else:
            splits = Splits.from_json(self.ctx.read_json(inp.splits_key))
            log = OptimizationLog(rows_in=len(splits.train), removed={}, removed_rows={}, splits=_sizes(splits))
            train = splits.train
            if inp.targeting and inp.previous_evaluation_key:
                evaluation = self.ctx.read_model(inp.previous_evaluation_key, EvaluationReport)
                train = self._target(inp, splits, evaluation, log, org_id, generator)
        # what the round exists to teach: the statements a knowledge update changed, a feedback round's corrections
        priority = self._changed_facts(inp, splits, train, log, org_id, generator) if inp.knowledge_base_id else []
        if inp.corrections_dataset_id:
            priority += self._corrections(inp, splits, log)
        if priority:
            # trained on whole within the iteration's steps (each with its copies); the rest replayed in the room left
            train, log.replay = within_budget(priority, train, inp.rows_per_iteration, zlib.crc32(inp.task_id.encode()))
        leaks = find_leaks(train, splits.held_out())
        if leaks:  # a bug, never a user mistake: refuse to train on held-out material
            raise invalid_input(f"{len(leaks)} training examples copy held-out examples, e.g. {leaks[0]}")
        log.rows_out = len(train)

        dataset_id = keys.optimized_dataset_id(inp.task_id, inp.iteration)
        prefix = keys.optimized_prefix(dataset_id)
        contexts_key = knowledge_base_version = None
        if inp.knowledge_base_id:
            train, contexts = self._with_passages(inp, splits, train, org_id)
            contexts_key, knowledge_base_version = (
                self.ctx.write_model(keys.contexts_key(dataset_id), contexts),
                contexts.knowledge_base_version,
            )
            log.knowledge_base_version, log.retrieval = (
                knowledge_base_version,
                {k: v.model_dump() for k, v in contexts.retrieval.items()},
            )
        train_key, splits_key = prefix + "train.jsonl", inp.splits_key or prefix + "splits.json"
        put_bytes(self.ctx.store, train_key, examples_to_jsonl(train))
        if inp.splits_key is None:
            self.ctx.write_json(splits_key, splits.to_json())
        log_dict = asdict(log)
        self.ctx.write_json(prefix + "optimization_log.json", log_dict)
        with self.ctx.sessions.begin() as session:
            row = session.get(Dataset, dataset_id) or Dataset(id=dataset_id)
            row.name, row.storage_key, row.file_format = (
                f"{inp.task_id} iteration {inp.iteration} training set",
                train_key,
                "jsonl",
            )
            row.size_bytes = len(examples_to_jsonl(train))
            row.sample_count, row.org_id, row.is_optimized = len(train), org_id, True
            row.source_dataset_id, row.task_id, row.optimization_log = inp.dataset_id, inp.task_id, log_dict
            session.add(row)
        activity.logger.info("optimized dataset %s: %s rows in, %s out", dataset_id, log.rows_in, log.rows_out)
        return OptimizeResult(
            dataset_id=dataset_id,
            train_key=train_key,
            splits_key=splits_key,
            log=_summary(log_dict),
            contexts_key=contexts_key,
            knowledge_base_version=knowledge_base_version,
        )

    def _version_file(self, dataset_id: str, version: int | None) -> tuple[str, str, str]:
        """(storage key, format, organization) of the dataset at `version`; None, or the first version of a dataset
        made before versions were recorded: the dataset's own file."""
        with self.ctx.sessions() as session:
            dataset = session.get(Dataset, dataset_id)
            if dataset is None:
                raise invalid_input(f"dataset {dataset_id} does not exist")
            if version is None:
                return dataset.storage_key, dataset.file_format, dataset.org_id
            pinned = session.scalars(
                select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == version)
            ).first()
            if pinned is not None:
                return pinned.storage_key, pinned.file_format, dataset.org_id
            if version != dataset.version:
                raise invalid_input(f"dataset {dataset_id} has no version {version}")
            return dataset.storage_key, dataset.file_format, dataset.org_id

    def _corrections(self, inp: OptimizeInput, splits: Splits, log: OptimizationLog) -> list[Example]:
        """A feedback round's corrected answers, to train on besides the training split (less any that copies a
        held-out question); what was kept and left out goes into the log."""
        assert inp.corrections_dataset_id is not None
        storage_key, file_format, _ = self._version_file(inp.corrections_dataset_id, inp.corrections_dataset_version)
        cleaned = self._cleaned(storage_key, file_format, f"the corrections dataset {inp.corrections_dataset_id}: ")
        source = {"dataset_id": inp.corrections_dataset_id, "version": inp.corrections_dataset_version}
        corrections = corrections_for_training(cleaned.examples, splits.held_out(), source)
        log.corrections = {
            **source,
            "rows_in": cleaned.rows_in,
            "trained": len(corrections.examples),
            "weight": CORRECTION_WEIGHT,
            "removed_by_cleaning": cleaned.removed_counts,
            "near_held_out": [e.question for e in corrections.near_held_out],
        }
        return corrections.examples

    def _target(
        self,
        inp: OptimizeInput,
        splits: Splits,
        evaluation: EvaluationReport,
        log: OptimizationLog,
        org_id: str,
        generator: Callable[[], QuestionAnswerGenerator],
    ) -> list[Example]:
        """The training set aimed at the last round's bad cases. Without a knowledge base: the training examples
        nearest to each failure up-weighted, plus validated rewrites. With one: training-split bad cases up-weighted,
        and for the feedback bad cases new examples generated from the chunks they retrieve (or, for the ablation's
        control, as many from random chunks)."""
        from knowledge.embeddings import embed

        if not inp.knowledge_base_id:
            targeted = target_bad_cases(
                splits.train, splits.held_out(), evaluation.bad_cases, evaluation.suggestions, embed
            )
            log.upweighted, log.added, log.rewrites_rejected, log.targeted_bad_cases = (
                targeted.upweighted,
                targeted.added,
                targeted.rejected,
                targeted.targeted_bad_cases,
            )
            return targeted.train
        train_cases = [c for c in evaluation.bad_cases if c.split == "train"]
        targeted = target_bad_cases(
            splits.train,
            splits.held_out(),
            train_cases,
            evaluation.suggestions,
            embed,
            TargetingConfig(rewrites_per_example=0),
        )
        index, _ = self._knowledge_index(inp, org_id)
        grounded = grounded_examples(
            evaluation.bad_cases, evaluation.suggestions, index, embed, generator(), splits.held_out(), targeted.train
        )
        # the ablation's control: as many generated examples, from random chunks
        if inp.targeting_source == "random_chunks":
            grounded = random_chunk_examples(
                len(grounded.examples),
                index,
                embed,
                generator(),
                splits.held_out(),
                targeted.train,
                seed=zlib.crc32(f"{inp.task_id}:{inp.iteration}".encode()),  # a new draw per task and round
            )
        log.upweighted, log.added, log.targeted_bad_cases = (
            targeted.upweighted,
            len(grounded.examples),
            grounded.targeted_bad_cases,
        )
        log.grounded = {**grounded.log(), "source": inp.targeting_source}
        return targeted.train + grounded.examples

    def _generator(self, inp: OptimizeInput) -> QuestionAnswerGenerator:
        """The local model writes the questions of generated examples."""
        from ml.base_model import load_model_and_tokenizer
        from ml.generation import LocalGenerator

        model, tokenizer = load_model_and_tokenizer(inp.model_name, self.ctx.settings.model_cache_dir)
        return LocalGenerator(model, tokenizer, batch_size=self.ctx.settings.generation_batch_size)

    def _changed_facts(
        self,
        inp: OptimizeInput,
        splits: Splits,
        train: list[Example],
        log: OptimizationLog,
        org_id: str,
        generator: Callable[[], QuestionAnswerGenerator],
    ) -> list[Example]:
        """A task that continues a parent grounded on an older version of the knowledge base (a knowledge update's
        re-training): examples generated from the statements the knowledge base holds now and did not then, each with
        `TargetingConfig.upweight` extra copies, as targeted examples have. None for any other task."""
        from knowledge.embeddings import embed

        with self.ctx.sessions() as session:
            task = session.get(MLTask, inp.task_id)
            parent = session.get(MLTask, task.parent_task_id) if task is not None and task.parent_task_id else None
            grounded_on = parent.knowledge_base_version if parent is not None else None
        if grounded_on is None or inp.knowledge_base_id is None:
            return []
        kb_id = inp.knowledge_base_id
        current, version = self._knowledge_index(inp, org_id)
        if grounded_on >= version:
            return []
        previous, compared_with = None, None
        # the parent's version, or (pruned since) the oldest one still kept: the changes since it are a part of those
        for candidate in range(grounded_on, version):
            try:
                previous = self.ctx.knowledge_indexes.get(keys.knowledge_index_prefix(org_id, kb_id, candidate))
            except ObjectNotFound:
                continue
            compared_with = candidate
            break
        if previous is None:
            log.changed_facts = {"compared_with": None, "reason": f"no index version from {grounded_on} is kept"}
            return []
        changed = changed_fact_examples(previous, current, embed, generator(), splits.held_out(), train)
        copies = TargetingConfig().upweight
        log.changed_facts = {
            "compared_with": compared_with,
            "grounded_on": grounded_on,
            "version": version,
            "chunks": changed.chunks,
            "candidates": changed.candidates,
            "added": len(changed.examples),
            "copies": 1 + copies,
            "rejected": changed.rejected,
        }
        activity.logger.info(
            "task %s: %s examples from the statements new since knowledge base version %s",
            inp.task_id,
            len(changed.examples),
            compared_with,
        )
        return [e for e in changed.examples for _ in range(1 + copies)]

    def _knowledge_index(self, inp: OptimizeInput, org_id: str):
        """The knowledge base's current index version, and its version number, recorded on the task as the newest it
        grounds on (a change notice for no newer a version has nothing new for it)."""
        with self.ctx.sessions() as session:
            kb = session.get(KnowledgeBase, inp.knowledge_base_id)
            if kb is None or kb.org_id != org_id:
                raise invalid_input(f"knowledge base {inp.knowledge_base_id} no longer exists")
            if not kb.index_key:
                raise invalid_input(f"knowledge base {kb.id} has no index")
            index_key, version = kb.index_key, kb.version
            task = session.get(MLTask, inp.task_id)
            if task is not None and (task.knowledge_base_version or 0) < version:
                task.knowledge_base_version = version
                session.commit()
        return self.ctx.knowledge_indexes.get(index_key), version

    def _with_passages(
        self, inp: OptimizeInput, splits: Splits, train: list[Example], org_id: str
    ) -> tuple[list[Example], RetrievedContexts]:
        """Training examples with RAFT passages, and the passages retrieved for each held-out question, from the
        knowledge base's current index version (recorded, so the iteration says which version it used)."""
        from knowledge.embeddings import embed

        index, version = self._knowledge_index(inp, org_id)
        config = ContextConfig(inp.retrieval_top_k, inp.oracle_fraction, seed=inp.iteration)
        passages, retrieval = {}, {}
        for name in ("feedback", "test"):
            examples, hits, supports = held_out_contexts(index, getattr(splits, name), embed, config)
            if inp.context_statements:  # asked as the model will be asked when it serves: the same cut
                examples = focused(examples, embed, inp.context_statements)
            passages.update(
                {
                    e.id: ExampleContext(
                        context=e.context, chunk_ids=e.context_chunk_ids, supporting_chunk_id=e.supporting_chunk_id
                    )
                    for e in examples
                }
            )
            retrieval[name] = retrieval_quality(name, hits, supports, config.top_k)
        contexts = RetrievedContexts(
            knowledge_base_id=inp.knowledge_base_id,
            knowledge_base_version=version,
            top_k=config.top_k,
            examples=passages,
            retrieval=retrieval,
        )
        train = training_contexts(index, train, embed, config)
        return (focused(train, embed, inp.context_statements) if inp.context_statements else train), contexts

    def _cleaned(self, storage_key: str, file_format: str, what: str = "") -> CleaningResult:
        """The stored dataset file, cleaned; a file that cannot be read is the user's mistake, named with `what`."""
        with tempfile.TemporaryDirectory() as tmp:
            local = get_file(self.ctx.store, storage_key, Path(tmp) / f"data.{file_format}")
            try:
                return clean_dataset(local, file_format)
            except DatasetFormatError as exc:
                raise invalid_input(f"{what}{exc}") from exc

    def _clean_and_split(self, storage_key: str, file_format: str) -> tuple[Splits, OptimizationLog]:
        settings = self.ctx.settings
        cleaned = self._cleaned(storage_key, file_format)
        try:
            splits = split_examples(
                cleaned.examples,
                SplitConfig(
                    settings.split_feedback_fraction, settings.split_test_fraction, settings.split_min_examples
                ),
            )
        except ValueError as exc:
            raise invalid_input(str(exc)) from exc
        log = OptimizationLog(
            rows_in=cleaned.rows_in,
            removed=cleaned.removed_counts,
            removed_rows=cleaned.removed,
            splits=_sizes(splits),
            derived_checks=cleaned.derived_checks,
        )
        return splits, log


def _sizes(splits: Splits) -> dict[str, int]:
    return {"train": len(splits.train), "feedback": len(splits.feedback), "test": len(splits.test)}


def _summary(log: dict) -> dict:
    """The log without per-row details, small enough for workflow history."""
    return {k: v for k, v in log.items() if k != "removed_rows"}
