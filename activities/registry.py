"""The model registry's activities: a finished task registers its final adapter; the promotion gate evaluates the
candidate, the alias's current version and the base model on the same test questions, then applies its decision."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.context import ActivityContext, Heartbeater, invalid_input
from activities.evaluate import evaluation_config
from core.errors import DomainError
from core.settings import TASK_QUEUE_WORKFLOWS
from core.status import GateStatus
from db.models import KnowledgeBase, MLTask, PromotionGate
from ml.evaluator import Progress, generate_answers, score_split
from ml.focused_context import focus_passages
from ml.optimizer import Splits, follow_dataset
from ml.precision import model_autocast
from ml.promotion import BASE, CANDIDATE, CURRENT, SetScores, decide, figures
from schemas.reports import RAG, RetrievedContexts
from schemas.workflow_io import (
    ConcludeGateInput,
    ConcludeGateResult,
    GateEvaluateInput,
    GateEvaluateResult,
    GateTestSet,
    RecordGateInput,
    RegisterFinalAdapterInput,
    RegisterFinalAdapterResult,
)
from services import dataset_versions, promotion, registry, suites
from storage.object_store import get_dir
from temporal_client.workflows import PromotionGateWorkflow


def _answering(heartbeat: Heartbeater, stage: str) -> Progress:
    """Heartbeat how many of the stage's questions are answered."""
    return lambda what, done, total: heartbeat.update(stage=f"{stage}: {done}/{total}")


class RegistryActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="register_final_adapter")
    async def register_final_adapter(self, inp: RegisterFinalAdapterInput) -> RegisterFinalAdapterResult:
        """The task's last iteration as the next version of its registered model (idempotent: a retry finds it
        registered). A refusal (the name holds another base model's adapters) is reported, not raised: the task itself
        succeeded.

        An incremental task's version is put before the gate for every alias that points at its parent's version: when
        the re-trained model is better, it replaces the parent's in production without anyone asking."""
        result, gates = await asyncio.to_thread(self._register, inp)
        for gate_id, gate_input in gates:
            with contextlib.suppress(WorkflowAlreadyStartedError):  # a retried attempt: that gate has already decided
                await activity.client().start_workflow(
                    PromotionGateWorkflow.run,
                    gate_input,
                    id=registry.gate_workflow_id(gate_id),
                    task_queue=TASK_QUEUE_WORKFLOWS,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
            result.gate_ids.append(gate_id)
        return result

    def _register(self, inp: RegisterFinalAdapterInput) -> tuple[RegisterFinalAdapterResult, list]:
        with self.ctx.sessions() as session:
            task = session.get(MLTask, inp.task_id)
            name = task.register_as or registry.default_model_name(task.name)
            try:
                version, _ = registry.register_version(
                    session,
                    self.ctx.store,
                    org_id=task.org_id,
                    model_name=name,
                    task_id=task.id,
                    iteration=inp.iteration,
                    created_by=task.created_by,
                )
            except DomainError as exc:
                activity.logger.warning("task %s: its adapter was not registered as %s: %s", task.id, name, exc.message)
                return RegisterFinalAdapterResult(model_name=name, version=None, error=exc.message), []
            activity.logger.info("task %s: registered as %s version %s", inp.task_id, name, version.version)
            gates = []
            if task.parent_task_id and self.ctx.settings.promote_incremental:
                model = registry.get_model(session, task.org_id, name)
                for alias in registry.aliases_following(session, model, task.parent_task_id):
                    gate_id = f"auto-{version.id}-{alias}"  # a retried attempt finds its gate
                    existing = session.get(PromotionGate, gate_id)
                    if existing is not None:
                        if existing.status == GateStatus.EVALUATING:
                            current = (
                                registry.get_version(session, model, existing.current_version)
                                if existing.current_version
                                else None
                            )
                            gates.append(
                                (gate_id, promotion.gate_input(session, self.ctx.settings, existing, version, current))
                            )
                        continue
                    try:
                        gate, gate_input = promotion.open_gate(
                            session,
                            self.ctx.settings,
                            model,
                            version.version,
                            alias=alias,
                            actor=registry.Actor(task.created_by),
                            gate_id=gate_id,
                        )
                    except DomainError as exc:  # a gate already deciding that alias: leave it be
                        activity.logger.info("task %s: not asking the gate for %s: %s", task.id, alias, exc.message)
                        continue
                    if gate_input is not None:  # None only for a forced promotion, and this one is not
                        gates.append((gate.id, gate_input))
            return RegisterFinalAdapterResult(model_name=name, version=version.version), gates

    @activity.defn(name="evaluate_for_promotion")
    def evaluate_for_promotion(self, inp: GateEvaluateInput) -> GateEvaluateResult:
        """Every model answers every test set's questions in the candidate's serving mode; per-question scores, then
        figures."""
        from ml.base_model import load_model_and_tokenizer, with_adapter

        config = evaluation_config(self.ctx.settings)
        with Heartbeater() as heartbeat:
            questions = [(test_set, self._questions(inp, test_set)) for test_set in inp.test_sets]
            adapters = {
                CANDIDATE: inp.candidate.adapter_key,
                **({CURRENT: inp.current.adapter_key} if inp.current else {}),
                BASE: None,
            }
            scores: dict[str, dict[str, list[float]]] = {test_set.name: {} for test_set in inp.test_sets}
            verdicts: dict[str, dict[str, list[bool | None]]] = {test_set.name: {} for test_set in inp.test_sets}
            for label, adapter_key in adapters.items():
                heartbeat.update(stage=f"loading {label}")
                model, tokenizer = load_model_and_tokenizer(inp.base_model, self.ctx.settings.model_cache_dir)
                with tempfile.TemporaryDirectory() as tmp:
                    if adapter_key is not None:
                        model = with_adapter(
                            model, get_dir(self.ctx.store, adapter_key, Path(tmp) / "adapter"), merge=True
                        )
                    for test_set, (examples, passages) in questions:
                        with model_autocast(model, self.ctx.settings.inference_precision):  # evaluated as served
                            answers = generate_answers(
                                model,
                                tokenizer,
                                [e.question for e in examples],
                                config.batch_size,
                                config.max_new_tokens,
                                _answering(heartbeat, f"{label} on {test_set.name}"),
                                passages,
                            )
                        result = score_split("test", examples, answers, config.weights)
                        scores[test_set.name][label] = [row.overall for row in result.examples]
                        verdicts[test_set.name][label] = [row.right for row in result.examples]
        sets = [
            SetScores(
                test_set.name,
                test_set.splits_key,
                scores[test_set.name],
                verdicts[test_set.name],
                [{"example_id": e.id, "question": e.question, "expected": e.answer} for e in examples],
            )
            for test_set, (examples, _) in questions
        ]
        return GateEvaluateResult(figures=figures(sets, inp.mode, inp.margin, inp.significance))

    def _questions(self, inp: GateEvaluateInput, test_set: GateTestSet):
        """The set's test examples (following its dataset's head), and in rag mode the passages each question is asked
        with: those its own evaluation used, or for a set evaluated closed book, the top-k from the candidate's
        knowledge base."""
        examples = Splits.from_json(self.ctx.read_json(test_set.splits_key)).test
        if test_set.dataset_id:  # rows excluded since (stale ones) leave, corrected answers are taken
            with self.ctx.sessions() as session:
                records = dataset_versions.head_records(session, self.ctx.store, inp.org_id, test_set.dataset_id)
            if records is not None:
                examples = follow_dataset(Splits(train=[], feedback=[], test=examples), records).splits.test
        if not examples:
            raise invalid_input(f"{test_set.name} is empty")
        if inp.mode != RAG:
            return examples, None
        if test_set.contexts_key:
            contexts = self.ctx.read_model(test_set.contexts_key, RetrievedContexts)
            return examples, [contexts.examples[e.id].context if e.id in contexts.examples else [] for e in examples]
        from knowledge.embeddings import embed
        from ml.retrieval_context import retrieve

        with self.ctx.sessions() as session:
            kb = session.get(KnowledgeBase, inp.knowledge_base_id) if inp.knowledge_base_id else None
            if kb is None or kb.org_id != inp.org_id or not kb.index_key:
                raise invalid_input(
                    f"{test_set.name} has no passages and the candidate's knowledge base {inp.knowledge_base_id} "
                    "has no index"
                )
            index_key = kb.index_key
        hits = retrieve(self.ctx.knowledge_indexes.get(index_key), examples, embed, inp.retrieval_top_k)
        passages = [[hit.chunk.text for hit in found] for found in hits]
        if inp.context_statements:
            passages = focus_passages([e.question for e in examples], passages, embed, inp.context_statements)
        return examples, passages

    @activity.defn(name="conclude_promotion")
    def conclude_promotion(self, inp: ConcludeGateInput) -> ConcludeGateResult:
        """Decide (ml.promotion.decide; a blocking suite with a failing case refuses), and move the alias if the
        candidate wins and the alias has not moved meanwhile."""
        decision = decide(inp.figures, inp.figures["margin"])
        outcome, reason, figures = decision.outcome, decision.reason, inp.figures
        with self.ctx.sessions() as session:
            suite_figures, refusal = suites.gate_verdict(session, inp.gate_id)
            if suite_figures:
                figures = {**figures, "suites": suite_figures}
            if refusal:  # a failing case of a blocking suite refuses whatever the test questions say
                reason = refusal if outcome == GateStatus.PROMOTED else f"{reason}; {refusal}"
                outcome = GateStatus.REFUSED
            gate = registry.conclude_gate(session, inp.gate_id, figures, outcome, reason)
            return ConcludeGateResult(status=gate.status, reason=gate.reason or "")

    @activity.defn(name="record_gate")
    def record_gate(self, inp: RecordGateInput) -> None:
        """The gate's projection: only a failure needs writing (the decision is written by `conclude_promotion`)."""
        if inp.error is not None:
            with self.ctx.sessions() as session:
                promotion.fail_gate(session, inp.gate_id, inp.error)
