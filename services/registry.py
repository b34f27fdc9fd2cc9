"""The model registry: registered models, their versions with lineage, aliases with the history of their moves, and
the promotion gate's requests and decisions.

A version points at its task's adapter in object storage (tasks never delete a finished iteration's artifacts) and
records its sha256, so a changed or missing adapter is noticed. Aliases move only three ways, each recorded with who,
when, from, to and why, and each in the audit log: through the gate (`request_promotion` starts the workflow,
`conclude_gate` applies its decision), forced by an owner or admin with a reason, or rolled back.

Every lookup is inside one organization (`org_id`): another tenant's model is simply not found.
"""

from __future__ import annotations

import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access import Scope
from core.clock import utcnow
from core.errors import Conflict, Corrupted, Invalid, NotFound
from core.status import ACTIVE_RELEASE_STATUSES, GateStatus
from db.models import (
    AliasMove,
    AuditEntry,
    MLTask,
    ModelAlias,
    ModelVersion,
    PromotionGate,
    RegisteredModel,
    Release,
    TaskExecution,
    new_id,
)
from db.session import page
from ml.base_model import KNOWN_MODELS
from schemas.reports import EvaluationReport
from storage import keys
from storage.checksums import ChecksumMismatch, stored_digest, verify_folder
from storage.object_store import ObjectNotFound, ObjectStore, get_bytes, get_dir

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
READY = "READY"


@dataclass(frozen=True)
class Actor:
    """Who moves an alias: a user (maybe through an API key), or the gate's workflow (neither)."""

    user_id: str | None = None
    api_key_id: str | None = None
    scopes: frozenset[Scope] = frozenset()


def gate_workflow_id(gate_id: str) -> str:
    return f"gate-{gate_id}"


def default_model_name(task_name: str) -> str:
    """A task name made into a registered model's name: letters, digits, '.', '_' and '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", task_name).strip("-._")[:100]
    return name or "model"


# ---------------------------------------------------------------- models and versions


def get_model(session: Session, org_id: str, name: str) -> RegisteredModel:
    model = session.scalar(
        select(RegisteredModel).where(RegisteredModel.org_id == org_id, RegisteredModel.name == name)
    )
    if model is None:
        raise NotFound(f"model {name} not found")
    return model


def list_models(session: Session, org_id: str, limit: int, offset: int) -> tuple[list[RegisteredModel], int]:
    query = select(RegisteredModel).where(RegisteredModel.org_id == org_id)
    return page(session, query, RegisteredModel.name, limit=limit, offset=offset)


def get_version(session: Session, model: RegisteredModel, version: int) -> ModelVersion:
    row = session.scalar(select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == version))
    if row is None:
        raise NotFound(f"model {model.name} has no version {version}")
    return row


def list_versions(session: Session, model: RegisteredModel, limit: int, offset: int) -> tuple[list[ModelVersion], int]:
    query = select(ModelVersion).where(ModelVersion.model_id == model.id)
    return page(session, query, ModelVersion.version.desc(), limit=limit, offset=offset)


def latest_version(session: Session, model: RegisteredModel) -> int | None:
    return session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id))


def aliases_of(session: Session, model: RegisteredModel) -> dict[str, ModelVersion]:
    rows = session.execute(
        select(ModelAlias.name, ModelVersion)
        .join(ModelVersion, ModelAlias.version_id == ModelVersion.id)
        .where(ModelAlias.model_id == model.id)
        .order_by(ModelAlias.name)
    )
    return {name: version for name, version in rows}


def resolve(session: Session, org_id: str, reference: str) -> tuple[RegisteredModel, ModelVersion]:
    """`name` (its production alias), `name@alias` or `name@3`: the model and the exact version it names."""
    name, _, selector = reference.partition("@")
    model = get_model(session, org_id, name)
    selector = selector or "production"
    if selector.isdigit():
        return model, get_version(session, model, int(selector))
    version = aliases_of(session, model).get(selector)
    if version is None:
        raise NotFound(f"model {name} has no alias {selector}")
    return model, version


@dataclass(frozen=True)
class Served:
    """What a `model` reference of a completion names: the exact version (or a base model), and its base model."""

    label: str  # name@3, or the base model
    base_model: str
    version: ModelVersion | None = None  # None: the base model itself


def base_models(session: Session, org_id: str) -> list[str]:
    """The base models an organization can be served: the shipped ones and those its registered models are built on."""
    built_on = session.scalars(select(RegisteredModel.base_model).where(RegisteredModel.org_id == org_id))
    return sorted(set(KNOWN_MODELS) | set(built_on))


def resolve_served(session: Session, org_id: str, reference: str) -> Served:
    """`name`, `name@alias`, `name@3` (as `resolve`) or a base model: what a completion asking for `reference` runs on.
    A registered model's name wins over a base model's."""
    name = reference.partition("@")[0]
    registered = session.scalar(
        select(RegisteredModel.id).where(RegisteredModel.org_id == org_id, RegisteredModel.name == name)
    )
    if registered is not None or "@" in reference:
        model, version = resolve(session, org_id, reference)
        return Served(f"{model.name}@{version.version}", model.base_model, version)
    if reference in base_models(session, org_id):
        return Served(reference, reference)
    raise NotFound(f"The model `{reference}` does not exist or you do not have access to it.")


def adapter_digest(store: ObjectStore, adapter_key: str) -> tuple[str, int]:
    """sha256 over the adapter's files (name and bytes, in name order) and their total size."""
    try:
        return stored_digest(store, adapter_key)
    except ObjectNotFound as exc:
        raise Invalid(f"the adapter {adapter_key} is missing from storage") from exc


def register_version(
    session: Session,
    store: ObjectStore,
    *,
    org_id: str,
    model_name: str,
    task_id: str,
    iteration: int | None,
    created_by: str | None,
    description: str | None = None,
) -> tuple[ModelVersion, bool]:
    """A finished iteration of a task as the next version of `model_name` (made on first use, on the task's base model).

    Registering the same iteration again returns the version it already is (False: nothing new)."""
    if not MODEL_NAME.fullmatch(model_name):
        raise Invalid(
            f"model name {model_name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    task = session.get(MLTask, task_id)
    if task is None or task.org_id != org_id:
        raise NotFound(f"task {task_id} not found")
    finished = finished_iterations(session, task_id)
    if not finished:
        raise Conflict(f"task {task_id} has no finished iteration to register (it is {task.status})")
    iteration = iteration if iteration is not None else max(finished)
    if iteration not in finished:
        raise Conflict(f"task {task_id} has no finished iteration {iteration}; finished: {sorted(finished)}")
    execution = finished[iteration]
    adapter_key, evaluation_key = execution.adapter_key, execution.evaluation_key
    if adapter_key is None or evaluation_key is None:  # finished_iterations selects phases that have both
        raise Conflict(f"task {task_id} iteration {iteration} names no adapter or no evaluation")

    model = session.scalar(
        select(RegisteredModel)
        .where(RegisteredModel.org_id == org_id, RegisteredModel.name == model_name)
        .with_for_update()
    )
    if model is not None and model.base_model != task.model_name:
        raise Conflict(
            f"model {model_name} holds adapters of {model.base_model}; task {task_id} trained {task.model_name}"
        )
    if model is not None:
        existing = session.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.task_id == task_id, ModelVersion.iteration == iteration
            )
        )
        if existing is not None:
            return existing, False
    try:
        evaluation = EvaluationReport.model_validate_json(get_bytes(store, evaluation_key))
    except ObjectNotFound as exc:
        raise Conflict(f"the evaluation of task {task_id} iteration {iteration} is missing from storage") from exc
    except ValidationError as exc:
        raise Conflict(
            f"the evaluation of task {task_id} iteration {iteration} is unreadable: {exc.error_count()} problems"
        ) from exc
    sha256, size = adapter_digest(store, adapter_key)
    dataset_id = keys.optimized_dataset_id(task_id, iteration)
    contexts = (
        keys.contexts_key(dataset_id)
        if task.knowledge_base_id and store.exists(keys.contexts_key(dataset_id))
        else None
    )
    if model is None:
        model = RegisteredModel(
            id=new_id(), org_id=org_id, name=model_name, base_model=task.model_name, created_by=created_by
        )
        session.add(model)
        session.flush()
    version = ModelVersion(
        id=new_id(),
        model_id=model.id,
        org_id=org_id,
        version=(latest_version(session, model) or 0) + 1,
        adapter_key=adapter_key,
        sha256=sha256,
        size_bytes=size,
        status=READY,
        task_id=task_id,
        iteration=iteration,
        dataset_id=dataset_id,
        knowledge_base_id=task.knowledge_base_id,
        knowledge_base_version=evaluation.knowledge_base_version,
        retrieval_top_k=task.retrieval_top_k if task.knowledge_base_id else None,
        context_statements=task.context_statements if task.knowledge_base_id else None,
        hyperparameters=dict(task.hyperparameters or {}),
        serving_mode=evaluation.headline.mode,
        scores={
            mode: {split: r.scores.overall for split, r in results.items()}
            for mode, results in evaluation.modes.items()
        },
        splits_key=keys.first_splits_key(task_id),
        contexts_key=contexts,
        evaluation_key=evaluation_key,
        description=description,
        created_by=created_by,
    )
    session.add(version)
    model.updated_at = utcnow()
    session.commit()
    return version, True


def finished_iterations(session: Session, task_id: str) -> dict[int, TaskExecution]:
    """The task's iterations whose evaluation finished, each with its evaluation phase (which names the adapter)."""
    rows = session.scalars(
        select(TaskExecution)
        .where(
            TaskExecution.task_id == task_id,
            TaskExecution.phase == "EVALUATING",
            TaskExecution.status == "COMPLETED",
            TaskExecution.adapter_key.is_not(None),
            TaskExecution.evaluation_key.is_not(None),
        )
        .order_by(TaskExecution.id)
    )
    return {row.iteration: row for row in rows}


def update_model(
    session: Session, model: RegisteredModel, *, name: str | None, description: str | None, fields: set[str]
) -> RegisteredModel:
    """Rename the model (its versions, aliases and gates follow; tasks that register into it follow the new name)
    and/or describe it (`fields`: what the caller gave; a description of null clears it)."""
    if not fields or ("name" in fields and name is None):
        raise Invalid("give a new name, a description, or both")
    if "name" in fields and name is not None and name != model.name:
        if not MODEL_NAME.fullmatch(name):
            raise Invalid(f"name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")
        taken = session.scalar(
            select(RegisteredModel.id).where(RegisteredModel.org_id == model.org_id, RegisteredModel.name == name)
        )
        if taken:
            raise Conflict(f"model {name} already exists")
        for task in session.scalars(
            select(MLTask).where(MLTask.org_id == model.org_id, MLTask.register_as == model.name)
        ):
            task.register_as = name
        model.name = name
    if "description" in fields:
        model.description = description
    session.commit()
    return model


def delete_model(session: Session, model: RegisteredModel) -> int:
    """Delete the model with its versions, alias history and gates (their adapters stay with their tasks); refused
    while an alias points at one of its versions or a gate weighs one. How many versions went with it."""
    pointing = sorted(aliases_of(session, model))
    if pointing:
        raise Conflict(
            f"model {model.name} has aliases ({', '.join(pointing)}) pointing at its versions: "
            "a served model is not deleted"
        )
    if running_gate(session, model):
        raise Conflict(f"model {model.name} has a version before the promotion gate; wait for its decision")
    if active_release_of(session, model):
        raise Conflict(f"model {model.name} has a release under way; wait for it to end, or abort it")
    versions = list(session.scalars(select(ModelVersion).where(ModelVersion.model_id == model.id)))
    for row in [
        *session.scalars(select(AliasMove).where(AliasMove.model_id == model.id)),
        *session.scalars(select(PromotionGate).where(PromotionGate.model_id == model.id)),
        *versions,
    ]:
        session.delete(row)
    session.flush()
    session.delete(model)
    session.commit()
    return len(versions)


def delete_version(session: Session, model: RegisteredModel, version: int) -> None:
    """Forget a version (its adapter stays with its task); refused while an alias points at it or a gate weighs it."""
    row = get_version(session, model, version)
    pointing = [alias for alias, target in aliases_of(session, model).items() if target.id == row.id]
    if pointing:
        raise Conflict(
            f"version {version} of model {model.name} is behind alias {', '.join(pointing)}: "
            "move or roll back the alias first"
        )
    if running_gate(session, model, candidate=version):
        raise Conflict(f"version {version} of model {model.name} is before the promotion gate; wait for its decision")
    if active_release_of(session, model, version):
        raise Conflict(f"version {version} of model {model.name} is in a release; wait for it to end, or abort it")
    session.delete(row)
    session.commit()


def write_adapter_tar(store: ObjectStore, version: ModelVersion, out: IO[bytes]) -> None:
    """The adapter folder (adapter_config.json, adapter_model.safetensors, ...) as an uncompressed tar, once its files
    are checked against the sha256 recorded when the version was registered (Corrupted, and nothing written, if not)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "adapter"
        try:
            get_dir(store, version.adapter_key, folder)
        except ObjectNotFound as exc:
            raise NotFound(f"the adapter of version {version.version} is missing from storage") from exc
        try:
            verify_folder(folder, version.sha256, f"the adapter of version {version.version}")
        except ChecksumMismatch as exc:
            raise Corrupted(f"{exc}; it is not sent") from exc
        with tarfile.open(fileobj=out, mode="w|") as tar:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                tar.add(path, arcname=path.relative_to(folder).as_posix())


# ---------------------------------------------------------------- aliases


def alias_history(session: Session, model: RegisteredModel, alias: str | None = None) -> list[AliasMove]:
    query = select(AliasMove).where(AliasMove.model_id == model.id, *([AliasMove.alias == alias] if alias else []))
    return list(session.scalars(query.order_by(AliasMove.id.desc())))


def move_alias(
    session: Session,
    model: RegisteredModel,
    alias: str,
    target: ModelVersion,
    *,
    kind: str,
    reason: str,
    actor: Actor,
    gate_id: str | None = None,
) -> AliasMove:
    """Point `alias` at `target`, recording the move in its history and in the audit log (the caller commits)."""
    row = session.scalar(
        select(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.name == alias).with_for_update()
    )
    previous = session.get_one(ModelVersion, row.version_id).version if row else None
    if row is None:
        session.add(ModelAlias(model_id=model.id, name=alias, version_id=target.id))
    else:
        row.version_id, row.updated_at = target.id, utcnow()
    move = AliasMove(
        model_id=model.id,
        alias=alias,
        from_version=previous,
        to_version=target.version,
        kind=kind,
        reason=reason,
        gate_id=gate_id,
        actor_user_id=actor.user_id,
        actor_key_id=actor.api_key_id,
    )
    session.add(move)
    session.add(
        AuditEntry(
            org_id=model.org_id,
            actor_user_id=actor.user_id,
            actor_key_id=actor.api_key_id,
            action=f"alias {alias} of model {model.name}: "
            f"v{previous if previous is not None else '-'} -> v{target.version} ({kind})",
            resource_type="model",
            resource_id=model.name,
            status_code=200,
        )
    )
    return move


def rollback(session: Session, model: RegisteredModel, alias: str, actor: Actor, reason: str | None) -> AliasMove:
    """Move `alias` back to the version it pointed at before its last move."""
    current, previous = rollback_target(session, model, alias)
    move = move_alias(
        session,
        model,
        alias,
        previous,
        kind="rollback",
        reason=reason or f"rolled back from version {current.version}",
        actor=actor,
    )
    session.commit()
    return move


def rollback_target(session: Session, model: RegisteredModel, alias: str) -> tuple[ModelVersion, ModelVersion]:
    """The version `alias` points at and the one a rollback would move it back to, refused as `rollback` would be;
    changes nothing (a dry run's preview)."""
    current = aliases_of(session, model).get(alias)
    if current is None:
        raise NotFound(f"model {model.name} has no alias {alias}")
    last = next(iter(alias_history(session, model, alias)), None)
    if last is None or last.from_version is None:
        raise Conflict(f"alias {alias} of model {model.name} has no previous version to roll back to")
    previous = session.scalar(
        select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == last.from_version)
    )
    if previous is None:
        raise Conflict(
            f"alias {alias} of model {model.name} was at version {last.from_version} before, which has been deleted"
        )
    if running_gate(session, model, alias=alias):
        raise Conflict(f"a promotion gate is deciding alias {alias} of model {model.name}; wait for its decision")
    return current, previous


# ---------------------------------------------------------------- the promotion gate


def running_gate(
    session: Session, model: RegisteredModel, *, alias: str | None = None, candidate: int | None = None
) -> PromotionGate | None:
    filters = [PromotionGate.model_id == model.id, PromotionGate.status == GateStatus.EVALUATING.value]
    filters += [PromotionGate.alias == alias] if alias else []
    filters += [PromotionGate.candidate_version == candidate] if candidate is not None else []
    return session.scalars(select(PromotionGate).where(*filters)).first()


def active_release_of(
    session: Session, model: RegisteredModel, version: int | None = None, *, alias: str | None = None
) -> Release | None:
    """A release of the model under way (PENDING, RUNNING or PAUSED): with `version` as its candidate, or of `alias`,
    if given."""
    filters = [Release.model_id == model.id, Release.status.in_([s.value for s in ACTIVE_RELEASE_STATUSES])]
    filters += [Release.candidate_version == version] if version is not None else []
    filters += [Release.alias == alias] if alias is not None else []
    return session.scalars(select(Release).where(*filters)).first()


def get_gate(session: Session, model: RegisteredModel, gate_id: str) -> PromotionGate:
    gate = session.get(PromotionGate, gate_id)
    if gate is None or gate.model_id != model.id:
        raise NotFound(f"promotion gate {gate_id} of model {model.name} not found")
    return gate


def list_gates(session: Session, model: RegisteredModel, limit: int, offset: int) -> tuple[list[PromotionGate], int]:
    query = select(PromotionGate).where(PromotionGate.model_id == model.id)
    return page(session, query, PromotionGate.created_at.desc(), PromotionGate.id, limit=limit, offset=offset)


def aliases_following(session: Session, model: RegisteredModel, task_id: str) -> list[str]:
    """The aliases that point at a version trained by `task_id`: a re-trained successor of that task asks the gate for
    them."""
    return [alias for alias, version in aliases_of(session, model).items() if version.task_id == task_id]


def conclude_gate(session: Session, gate_id: str, figures: dict, outcome: GateStatus, reason: str) -> PromotionGate:
    """Apply the gate's decision (PROMOTED, REFUSED or INCONCLUSIVE, `ml.promotion.decide`): move the alias if it
    promotes and the alias has not moved since the gate started."""
    promote = outcome == GateStatus.PROMOTED
    gate = session.get_one(PromotionGate, gate_id, with_for_update=True)
    if gate.status != GateStatus.EVALUATING.value:  # a retried attempt after the decision was applied
        return gate
    model = session.get_one(RegisteredModel, gate.model_id)
    current = aliases_of(session, model).get(gate.alias)
    candidate = session.scalar(
        select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == gate.candidate_version)
    )
    if promote and (current.version if current else None) != gate.current_version:
        promote, reason = (
            False,
            (
                f"refused: alias {gate.alias} moved to version {current.version if current else None} while the gate "
                f"compared with version {gate.current_version}; ask again"
            ),
        )
    if promote and candidate is None:
        promote, reason = False, f"refused: version {gate.candidate_version} was deleted while the gate ran"
    if promote and candidate is not None:
        move_alias(
            session,
            model,
            gate.alias,
            candidate,
            kind="gate",
            reason=reason,
            actor=Actor(gate.requested_by, gate.requested_key_id),
            gate_id=gate.id,
        )
    gate.status = (
        GateStatus.PROMOTED if promote else GateStatus.REFUSED if outcome == GateStatus.PROMOTED else outcome
    ).value
    gate.figures, gate.reason, gate.finished_at = figures, reason, utcnow()
    session.commit()
    return gate
