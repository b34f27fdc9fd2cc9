"""Asking the promotion gate: a request opens a gate (EVALUATING, with a run of each scenario suite its alias requires,
against the candidate) and starts its workflow, or moves the alias at once when forced (audited); a gate that cannot
decide fails with its suite runs. The gate's decision is applied by `services.registry.conclude_gate`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from temporalio.service import RPCError

from core.access import Scope
from core.clock import utcnow
from core.errors import Conflict, Forbidden, Invalid, Unavailable
from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from core.status import GateStatus
from db.models import MLTask, ModelVersion, PromotionGate, RegisteredModel, new_id
from schemas.workflow_io import ActivityTimeouts, GateAdapter, GateTestSet, PromotionGateInput
from services import suites
from services.registry import (
    Actor,
    active_release_of,
    aliases_of,
    gate_workflow_id,
    get_version,
    move_alias,
    running_gate,
)
from services.tasks import Temporal
from temporal_client.workflows import PromotionGateWorkflow


async def request_promotion(
    session: Session,
    temporal: Temporal,
    settings: Settings,
    model: RegisteredModel,
    version: int,
    *,
    alias: str,
    actor: Actor,
    force: bool = False,
    reason: str | None = None,
) -> PromotionGate:
    """Ask the gate to point `alias` at `version` (it evaluates, then decides), or force the move at once (audited)."""
    gate, inp = open_gate(session, settings, model, version, alias=alias, actor=actor, force=force, reason=reason)
    if inp is None:  # forced: already moved
        return gate
    try:
        client = await temporal()
        await client.start_workflow(
            PromotionGateWorkflow.run, inp, id=gate_workflow_id(gate.id), task_queue=TASK_QUEUE_WORKFLOWS
        )
    except (RPCError, Unavailable) as exc:
        session.delete(gate)  # nothing started: leave no gate behind
        session.commit()
        raise Unavailable(f"could not start the promotion gate on Temporal: {getattr(exc, 'message', exc)}") from exc
    return gate


def promotion_target(
    session: Session, model: RegisteredModel, version: int, alias: str
) -> tuple[ModelVersion, ModelVersion | None]:
    """The candidate and the version `alias` points at now (None: nothing), refused as a promotion request would be;
    changes nothing (a dry run's preview)."""
    candidate = get_version(session, model, version)
    current = aliases_of(session, model).get(alias)
    if current is not None and current.id == candidate.id:
        raise Conflict(f"alias {alias} of model {model.name} already points at version {version}")
    if running_gate(session, model, alias=alias):
        raise Conflict(
            f"a promotion gate is already deciding alias {alias} of model {model.name}; wait for its decision"
        )
    release = active_release_of(session, model, alias=alias)
    if release is not None:
        raise Conflict(
            f"release {release.id} is {release.status} on alias {alias} of model {model.name}; wait for it to end, "
            "or abort it"
        )
    return candidate, current


def open_gate(
    session: Session,
    settings: Settings,
    model: RegisteredModel,
    version: int,
    *,
    alias: str,
    actor: Actor,
    force: bool = False,
    reason: str | None = None,
    gate_id: str | None = None,
) -> tuple[PromotionGate, PromotionGateInput | None]:
    """Record a promotion request: forced, the alias moves now (no workflow input); otherwise the gate is EVALUATING
    and its workflow's input is returned for the caller to start."""
    candidate, current = promotion_target(session, model, version, alias)
    gate = PromotionGate(
        id=gate_id or new_id(),
        org_id=model.org_id,
        model_id=model.id,
        alias=alias,
        candidate_version=version,
        current_version=current.version if current else None,
        forced=force,
        margin=settings.promotion_margin,
        mode=candidate.serving_mode,
        requested_by=actor.user_id,
        requested_key_id=actor.api_key_id,
    )
    if force:
        if Scope.MODELS_FORCE not in actor.scopes:
            raise Forbidden("forcing a promotion past the gate requires models:force (owners and admins)")
        if not reason:
            raise Invalid("reason: a forced promotion must say why (it is audited)")
        gate.status, gate.reason, gate.finished_at = GateStatus.PROMOTED.value, f"forced: {reason}", utcnow()
        session.add(gate)
        move_alias(session, model, alias, candidate, kind="forced", reason=reason, actor=actor, gate_id=gate.id)
        session.commit()
        return gate, None
    gate.status = GateStatus.EVALUATING.value
    session.add(gate)
    session.flush()
    suites.open_gate_runs(session, gate, model, candidate)  # the suites the alias requires, against the candidate
    session.commit()
    return gate, gate_input(session, settings, gate, candidate, current)


def source_dataset(session: Session, task_id: str) -> str | None:
    """The dataset a task's splits were made from (None: the task is gone)."""
    task = session.get(MLTask, task_id)
    return task.dataset_id if task is not None else None


def ancestor_tasks(session: Session, task_id: str) -> set[str]:
    """The tasks an incremental task continues: its parent, the parent's parent, and so on."""
    found: set[str] = set()
    task = session.get(MLTask, task_id)
    while task is not None and task.parent_task_id and task.parent_task_id not in found:
        found.add(task.parent_task_id)
        task = session.get(MLTask, task.parent_task_id)
    return found


def gate_input(
    session: Session, settings: Settings, gate: PromotionGate, candidate: ModelVersion, current: ModelVersion | None
) -> PromotionGateInput:
    """What the gate's workflow asks: the candidate's test split, and the current version's when it is another one. An
    incremental task's test split is its ancestors' brought to its dataset's head (rows since marked stale left out,
    corrected answers taken), so a current version from an ancestor of the candidate's task adds no set of its own: its
    questions would still expect the values its documents no longer state."""
    model = session.get_one(RegisteredModel, gate.model_id)
    test_sets = [
        GateTestSet(
            name=f"v{candidate.version}'s test split",
            splits_key=candidate.splits_key,
            contexts_key=candidate.contexts_key,
            dataset_id=source_dataset(session, candidate.task_id),
        )
    ]
    if (
        current is not None
        and current.splits_key != candidate.splits_key
        and current.task_id not in ancestor_tasks(session, candidate.task_id)
    ):
        test_sets.append(
            GateTestSet(
                name=f"v{current.version}'s test split",
                splits_key=current.splits_key,
                contexts_key=current.contexts_key,
                dataset_id=source_dataset(session, current.task_id),
            )
        )
    return PromotionGateInput(
        gate_id=gate.id,
        org_id=gate.org_id,
        base_model=model.base_model,
        candidate=GateAdapter(version=candidate.version, adapter_key=candidate.adapter_key),
        current=GateAdapter(version=current.version, adapter_key=current.adapter_key) if current else None,
        test_sets=test_sets,
        mode=gate.mode,
        margin=gate.margin,
        knowledge_base_id=candidate.knowledge_base_id,
        retrieval_top_k=candidate.retrieval_top_k or 3,
        context_statements=candidate.context_statements,
        timeouts=ActivityTimeouts(
            evaluate_seconds=settings.gate_evaluate_seconds,
            heartbeat_seconds=settings.heartbeat_timeout_seconds,
            max_attempts=settings.activity_max_attempts,
        ),
        significance=settings.promotion_significance,
        suite_run_ids=[run.id for run in suites.gate_runs(session, gate.id)],
    )


def fail_gate(session: Session, gate_id: str, error: str) -> None:
    """The gate could not decide: it is FAILED with the error, and so are its suite runs that had not finished."""
    gate = session.get(PromotionGate, gate_id, with_for_update=True)
    if gate is not None and gate.status == GateStatus.EVALUATING.value:
        gate.status, gate.reason, gate.finished_at = GateStatus.FAILED.value, error, utcnow()
        for run in suites.gate_runs(session, gate_id):
            suites.fail_run(session, run.id, error, commit=False)
    session.commit()
