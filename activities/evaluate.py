"""evaluate_adapter: answer the feedback and test splits with the tuned model (and once with the base model), score, mine bad cases."""

from __future__ import annotations

import tempfile
from pathlib import Path

from temporalio import activity

from activities.context import ActivityContext, Heartbeater
from ml.evaluator import EvaluationConfig, evaluate_predictions, lineage_by_bad_case, per_example_loss, predict_splits
from ml.examples import examples_from_jsonl
from ml.metrics import GradeThresholds, ScoreWeights
from ml.optimizer import Splits
from schemas.reports import EvaluationReport
from schemas.workflow_io import EvaluateInput, EvaluateResult
from storage import keys
from storage.object_store import get_bytes, get_dir


def evaluation_config(settings) -> EvaluationConfig:
    return EvaluationConfig(
        weights=ScoreWeights(settings.score_weight_exact_match, settings.score_weight_token_f1, settings.score_weight_bleu, settings.score_weight_rouge_l),
        thresholds=GradeThresholds(settings.grade_excellent, settings.grade_good, settings.grade_acceptable),
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.generation_batch_size,
    )


class EvaluateActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="evaluate_adapter")
    def evaluate_adapter(self, inp: EvaluateInput) -> EvaluateResult:
        activity.logger.info("evaluating task %s (organization %s) iteration %s", inp.task_id, inp.org_id, inp.iteration)
        with Heartbeater() as heartbeat:
            return self._evaluate(inp, heartbeat)

    def _evaluate(self, inp: EvaluateInput, heartbeat: Heartbeater) -> EvaluateResult:
        from peft import PeftModel

        from ml.base_model import load_model_and_tokenizer

        config = evaluation_config(self.ctx.settings)
        splits = Splits.from_json(self.ctx.read_json(inp.splits_key))
        train = examples_from_jsonl(get_bytes(self.ctx.store, inp.train_key))

        def progress(what: str, done: int, total: int) -> None:
            heartbeat.update(stage=f"{what} {done}/{total}")

        heartbeat.update(stage="loading model")
        model, tokenizer = load_model_and_tokenizer(inp.model_name, self.ctx.settings.model_cache_dir)
        baseline_key = inp.baseline_key or keys.evaluation_prefix(inp.task_id) + "baseline.json"
        if inp.baseline_key is None:  # the untuned model, once per task
            baseline = evaluate_predictions(splits, predict_splits(model, tokenizer, splits, config, progress), [], config, iteration=0)
            self.ctx.write_model(baseline_key, baseline)
        else:
            baseline = self.ctx.read_model(baseline_key, EvaluationReport)

        with tempfile.TemporaryDirectory() as tmp:
            adapter_dir = get_dir(self.ctx.store, inp.adapter_key, Path(tmp) / "adapter")
            # merged weights generate faster than the adapter's side branches; this model copy is ours alone
            tuned = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
            predictions = predict_splits(tuned, tokenizer, splits, config, progress)
            heartbeat.update(stage="training-split loss")
            losses = per_example_loss(tuned, tokenizer, splits.train, config.max_seq_length)
        previous = self.ctx.read_model(inp.previous_evaluation_key, EvaluationReport) if inp.previous_evaluation_key else None
        report = evaluate_predictions(splits, predictions, losses, config, inp.iteration, baseline=baseline, previous=previous, lineage=lineage_by_bad_case(train))
        report.adapter_key = inp.adapter_key
        evaluation_key = self.ctx.write_model(keys.evaluation_prefix(inp.task_id, inp.iteration) + "evaluation.json", report)
        return EvaluateResult(
            evaluation_key=evaluation_key, baseline_key=baseline_key, test_score=report.score("test"), feedback_score=report.score("feedback"),
            baseline_test_score=baseline.score("test"), grade=report.headline.grade, bad_cases=len(report.bad_cases),
        )
