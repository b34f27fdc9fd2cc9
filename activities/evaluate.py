"""evaluate_adapter: answer the feedback and test splits with the tuned model (and once with the base model), score,
mine bad cases."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from temporalio import activity

from activities.context import ActivityContext, Heartbeater
from core.status import TaskStatus
from ml.evaluator import (
    EvaluationConfig,
    chunks_by_bad_case,
    evaluate_predictions,
    lineage_by_bad_case,
    per_example_loss,
    predict_splits,
)
from ml.examples import examples_from_jsonl
from ml.metrics import GradeThresholds, ScoreWeights
from ml.optimizer import Splits
from ml.precision import model_autocast
from observability import metrics
from schemas.reports import CLOSED_BOOK, RAG, EvaluationReport, RetrievedContexts
from schemas.workflow_io import EvaluateInput, EvaluateResult
from storage import keys
from storage.object_store import get_bytes, get_dir


def evaluation_config(settings) -> EvaluationConfig:
    return EvaluationConfig(
        weights=ScoreWeights(
            settings.score_weight_exact_match,
            settings.score_weight_token_f1,
            settings.score_weight_bleu,
            settings.score_weight_rouge_l,
        ),
        thresholds=GradeThresholds(settings.grade_excellent, settings.grade_good, settings.grade_acceptable),
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.generation_batch_size,
    )


class EvaluateActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="evaluate_adapter")
    def evaluate_adapter(self, inp: EvaluateInput) -> EvaluateResult:
        activity.logger.info(
            "evaluating task %s (organization %s) iteration %s", inp.task_id, inp.org_id, inp.iteration
        )
        with Heartbeater(
            progress=self.ctx.progress_recorder(inp.task_id, inp.iteration, TaskStatus.EVALUATING.value)
        ) as heartbeat:
            return self._evaluate(inp, heartbeat)

    def _evaluate(self, inp: EvaluateInput, heartbeat: Heartbeater) -> EvaluateResult:
        from ml.base_model import load_model_and_tokenizer, with_adapter

        config = dataclasses.replace(evaluation_config(self.ctx.settings), max_seq_length=inp.max_seq_length)
        splits = Splits.from_json(self.ctx.read_json(inp.splits_key))
        train = examples_from_jsonl(get_bytes(self.ctx.store, inp.train_key))
        contexts = self.ctx.read_model(inp.contexts_key, RetrievedContexts) if inp.contexts_key else None
        # with a knowledge base the task serves with retrieval: that is the headline; closed book is measured beside it
        passages = {example_id: c.context for example_id, c in contexts.examples.items()} if contexts else None
        mode = RAG if contexts else CLOSED_BOOK
        # answers in the server's precision (evaluated as served); the training split's loss in the trainer's
        answering, training = self.ctx.settings.inference_precision, self.ctx.settings.training_precision
        retrieval = contexts.retrieval if contexts else None
        knowledge_base_version = contexts.knowledge_base_version if contexts else None

        def progress(what: str, done: int, total: int) -> None:
            heartbeat.update(stage=f"{what} {done}/{total}", done=done, total=total)

        def answers(model) -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]] | None]:
            """(answers in the serving mode, answers in the other mode), in the inference precision."""
            with model_autocast(model, answering):
                closed = predict_splits(model, tokenizer, splits, config, progress)
                return (
                    (predict_splits(model, tokenizer, splits, config, progress, passages), {CLOSED_BOOK: closed})
                    if contexts
                    else (closed, None)
                )

        heartbeat.update(stage="loading model")
        model, tokenizer = load_model_and_tokenizer(inp.model_name, self.ctx.settings.model_cache_dir)
        baseline_key = inp.baseline_key or keys.evaluation_prefix(inp.task_id) + "baseline.json"
        if inp.baseline_key is None:  # the untuned model, once per task, in every mode the task is evaluated in
            served, other = answers(model)
            baseline = evaluate_predictions(
                splits,
                served,
                [],
                config,
                iteration=0,
                mode=mode,
                other_modes=other,
                retrieval=retrieval,
                knowledge_base_version=knowledge_base_version,
                passages=passages,
            )
            self.ctx.write_model(baseline_key, baseline)
        else:
            baseline = self.ctx.read_model(baseline_key, EvaluationReport)

        with tempfile.TemporaryDirectory() as tmp:
            adapter_dir = get_dir(self.ctx.store, inp.adapter_key, Path(tmp) / "adapter")
            # merged weights generate faster than the adapter's side branches; this model copy is ours alone
            tuned = with_adapter(model, adapter_dir, merge=True)
            served, other = answers(tuned)
            heartbeat.update(stage="training-split loss")
            # the training split as it was trained on (with its passages, when there are any)
            as_trained = {e.id: e for e in train}
            with model_autocast(tuned, training):
                losses = per_example_loss(
                    tuned, tokenizer, [as_trained.get(e.id, e) for e in splits.train], config.max_seq_length
                )
        previous = (
            self.ctx.read_model(inp.previous_evaluation_key, EvaluationReport) if inp.previous_evaluation_key else None
        )
        report = evaluate_predictions(
            splits,
            served,
            losses,
            config,
            inp.iteration,
            baseline=baseline,
            previous=previous,
            lineage=lineage_by_bad_case(train),
            chunks=chunks_by_bad_case(train),
            mode=mode,
            other_modes=other,
            previous_label="parent" if inp.previous_is_parent else "previous",
            retrieval=retrieval,
            knowledge_base_version=knowledge_base_version,
            passages=passages,
        )
        report.adapter_key = inp.adapter_key
        metrics.evaluation_scored(
            {split: report.score(split) for split in ("test", "feedback")},
            mode,
            {split: report.accuracy(split) for split in ("test", "feedback")},
        )
        evaluation_key = self.ctx.write_model(
            keys.evaluation_prefix(inp.task_id, inp.iteration) + "evaluation.json", report
        )
        return EvaluateResult(
            evaluation_key=evaluation_key,
            baseline_key=baseline_key,
            test_score=report.score("test"),
            feedback_score=report.score("feedback"),
            baseline_test_score=baseline.score("test"),
            grade=report.headline.grade,
            bad_cases=len(report.bad_cases),
            test_accuracy=report.accuracy("test"),
            feedback_accuracy=report.accuracy("feedback"),
            baseline_test_accuracy=baseline.accuracy("test"),
        )
