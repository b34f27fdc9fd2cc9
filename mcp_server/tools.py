"""The tools: thin adapters over `services/`, each authorized with the HTTP API's scopes.

Read tools answer at once. A tool that changes something (run a suite, promote a version, roll an alias back, start,
promote or abort a release) without
`confirm: true` answers a dry run's preview (the same checks the change would make, nothing written); with it, it
changes and is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field
from sqlalchemy.orm import Session

from core.access import Scope
from core.errors import Conflict
from core.status import TaskStatus
from db.models import AliasMove, MLTask, ModelVersion, PromotionGate, RegisteredModel, Suite, SuiteRun
from mcp_server.backend import Backend, actor
from ml.release import Thresholds
from schemas.api import MODEL_NAME, AliasMovePublic, GatePublic, SuiteRunSummary, SuiteSummary
from services import promotion, registry, releases, suites, tasks

Limit = Annotated[int, Field(ge=1, le=200, description="How many to return")]
Offset = Annotated[int, Field(ge=0, le=2**31 - 1, description="How many to skip")]
ModelName = Annotated[str, Field(min_length=1, max_length=100, pattern=MODEL_NAME, description="A registered model")]
AliasName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=MODEL_NAME, description="An alias, e.g. production")
]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]
Reason = Annotated[str | None, Field(max_length=2000, description="Why (kept with the decision, audited)")]
Confirm = Annotated[bool, Field(description="true: do it; false (default): only preview what it would do")]
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


# ---------------------------------------------------------------- what the tools answer


def model_view(session: Session, model: RegisteredModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "base_model": model.base_model,
        "description": model.description,
        "latest_version": registry.latest_version(session, model),
        "aliases": {alias: v.version for alias, v in registry.aliases_of(session, model).items()},
        "required_suites": model.required_suites or {},
    }


def version_view(session: Session, model: RegisteredModel, version: ModelVersion) -> dict[str, Any]:
    aliases = [alias for alias, target in registry.aliases_of(session, model).items() if target.id == version.id]
    return {
        "model_name": model.name,
        "version": version.version,
        "status": version.status,
        "aliases": aliases,
        "task_id": version.task_id,
        "iteration": version.iteration,
        "serving_mode": version.serving_mode,
        "scores": version.scores,
        "description": version.description,
        "created_at": version.created_at.isoformat(),
    }


def move_view(move: AliasMove) -> dict[str, Any]:
    return AliasMovePublic.model_validate(move, from_attributes=True).model_dump(mode="json")


def gate_view(model: RegisteredModel, gate: PromotionGate) -> dict[str, Any]:
    return GatePublic(
        gate_id=gate.id,
        model_name=model.name,
        **{k: getattr(gate, k) for k in GatePublic.model_fields if k not in ("gate_id", "model_name")},
    ).model_dump(mode="json")


def task_view(task: MLTask) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "task_name": task.name,
        "mode": task.mode,
        "status": task.status,
        "model_name": task.model_name,
        "dataset_id": task.dataset_id,
        "current_iteration": task.current_iteration,
        "max_iterations": task.max_iterations,
        "latest_score": task.latest_score,
        "baseline_score": task.baseline_score,
        "error": task.error,
        "created_at": task.created_at.isoformat(),
    }


def suite_view(suite: Suite) -> dict[str, Any]:
    return SuiteSummary(
        suite_id=suite.id, **{k: getattr(suite, k) for k in SuiteSummary.model_fields if k != "suite_id"}
    ).model_dump(mode="json")


def run_view(run: SuiteRun, *, results: bool = False) -> dict[str, Any]:
    summary = SuiteRunSummary(
        run_id=run.id, **{k: getattr(run, k) for k in SuiteRunSummary.model_fields if k != "run_id"}
    ).model_dump(mode="json")
    return {**summary, "results": run.results} if results else summary


def page(items: list[dict[str, Any]], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


# ---------------------------------------------------------------- the tools


def add_tools(server: MCPServer, backend: Backend) -> None:
    """Register every tool on `server`, each over `backend`."""

    # -------------------------------------------------- the model registry

    @server.tool(annotations=READ)
    def list_models(ctx: Context, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
        """The organization's registered models, by name: base model, latest version, aliases."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            rows, total = registry.list_models(session, caller.org_id, limit, offset)
            return page([model_view(session, m) for m in rows], total, limit, offset)

    @server.tool(annotations=READ)
    def list_versions(ctx: Context, model: ModelName, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
        """A model's versions, newest first: the task and iteration each came from, scores, aliases on it."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            row = registry.get_model(session, caller.org_id, model)
            rows, total = registry.list_versions(session, row, limit, offset)
            return page([version_view(session, row, v) for v in rows], total, limit, offset)

    @server.tool(annotations=READ)
    def list_aliases(ctx: Context, model: ModelName) -> dict[str, Any]:
        """A model's aliases, the version each points at, and the history of their moves (newest first)."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            row = registry.get_model(session, caller.org_id, model)
            history = registry.alias_history(session, row)
            return {
                "model_name": row.name,
                "aliases": [
                    {
                        "alias": alias,
                        "version": version.version,
                        "history": [move_view(m) for m in history if m.alias == alias],
                    }
                    for alias, version in registry.aliases_of(session, row).items()
                ],
            }

    @server.tool(annotations=READ)
    def served_version(ctx: Context, model: ModelName, alias: AliasName = "production") -> dict[str, Any]:
        """Which version an alias of a model serves now."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            row, version = registry.resolve(session, caller.org_id, f"{model}@{alias}")
            return {"model_name": row.name, "alias": alias, **version_view(session, row, version)}

    @server.tool(annotations=READ)
    def get_gate(ctx: Context, model: ModelName, gate_id: Id) -> dict[str, Any]:
        """A promotion gate's outcome: EVALUATING, then PROMOTED or REFUSED with the figures and the reason (or
        FAILED)."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            row = registry.get_model(session, caller.org_id, model)
            return gate_view(row, registry.get_gate(session, row, gate_id))

    # -------------------------------------------------- tasks

    @server.tool(annotations=READ)
    def list_tasks(
        ctx: Context, status: TaskStatus | None = None, limit: Limit = 50, offset: Offset = 0
    ) -> dict[str, Any]:
        """The organization's fine-tuning tasks, newest first (optionally of one status)."""
        with backend.reading(ctx, Scope.TASKS_READ) as (caller, session):
            rows, total = tasks.list_tasks(session, caller.org_id, status, limit, offset)
            return page([task_view(t) for t in rows], total, limit, offset)

    @server.tool(annotations=READ)
    def get_task(ctx: Context, task_id: Id) -> dict[str, Any]:
        """A task: status, iterations, scores, error."""
        with backend.reading(ctx, Scope.TASKS_READ) as (caller, session):
            return task_view(tasks.get_task(session, caller.org_id, task_id))

    @server.tool(annotations=READ)
    def task_report(ctx: Context, task_id: Id) -> dict[str, Any]:
        """A finished task's report: every iteration's scores against the base model, the wrong test answers."""
        with backend.reading(ctx, Scope.TASKS_READ) as (caller, session):
            return tasks.task_report(session, backend.store, caller.org_id, task_id).model_dump(mode="json")

    # -------------------------------------------------- scenario suites

    @server.tool(annotations=READ)
    def list_suites(ctx: Context, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
        """The latest version of each scenario suite, by name."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            rows, total = suites.list_suites(session, caller.org_id, limit, offset)
            return page([suite_view(s) for s in rows], total, limit, offset)

    @server.tool(annotations=READ)
    def list_suite_runs(
        ctx: Context, suite: ModelName | None = None, limit: Limit = 50, offset: Offset = 0
    ) -> dict[str, Any]:
        """Suite runs, newest first (of one suite when named): what answered, passed and failed counts."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            rows, total = suites.list_runs(session, caller.org_id, suite, limit, offset)
            return page([run_view(r) for r in rows], total, limit, offset)

    @server.tool(annotations=READ)
    def get_suite_run(ctx: Context, run_id: Id) -> dict[str, Any]:
        """A suite run with each case's answer and verdict (every assertion with its detail)."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            return run_view(suites.get_run(session, caller.org_id, run_id), results=True)

    # -------------------------------------------------- changes: a preview unless confirmed

    @server.tool(annotations=CHANGE)
    async def run_suite(
        ctx: Context,
        suite: ModelName,
        model: Annotated[
            str,
            Field(min_length=1, max_length=200, description="What answers: name@3, name@alias, name or a base model"),
        ],
        version: Annotated[int | None, Field(ge=1, le=1_000_000, description="The suite's version")] = None,
        confirm: Confirm = False,
    ) -> dict[str, Any]:
        """Run a scenario suite against a model version (a workflow on the evaluate pool); get_suite_run shows its
        verdicts once it is COMPLETED."""
        with (
            backend.operation(
                ctx, Scope.MODELS_WRITE, confirm=confirm, action="run_suite", resource_type="suite", resource_id=suite
            ) as caller,
            backend.sessions() as session,
        ):
            if not confirm:
                row = suites.get_suite(session, caller.org_id, suite, version)
                served = registry.resolve_served(session, caller.org_id, model)
                return {
                    "dry_run": True,
                    "would": f"run suite {row.name} v{row.version} ({row.case_count} cases) against {served.label}",
                    "suite": suite_view(row),
                    "model": served.label,
                }
            run = await suites.start_run(
                session,
                backend.temporal,
                backend.settings,
                caller.org_id,
                suite,
                model,
                version=version,
                requested_by=caller.user_id,
            )
            return {"dry_run": False, "run": run_view(run)}

    @server.tool(annotations=CHANGE)
    async def promote_version(
        ctx: Context,
        model: ModelName,
        version: Annotated[int, Field(ge=1, le=2**31 - 1)],
        alias: AliasName = "production",
        confirm: Confirm = False,
    ) -> dict[str, Any]:
        """Ask the promotion gate to point an alias at a version: it evaluates the candidate against the alias's
        version (and runs the suites the alias requires), then promotes or refuses (get_gate shows it); never
        forced."""
        with (
            backend.operation(
                ctx,
                Scope.MODELS_WRITE,
                confirm=confirm,
                action="promote_version",
                resource_type="model_version",
                resource_id=f"{model}@{version}",
            ) as caller,
            backend.sessions() as session,
        ):
            row = registry.get_model(session, caller.org_id, model)
            if not confirm:
                candidate, current = promotion.promotion_target(session, row, version, alias)
                return {
                    "dry_run": True,
                    "would": f"ask the promotion gate to move alias {alias} of model {row.name} from "
                    f"{f'v{current.version}' if current else 'nothing'} to v{candidate.version}",
                    "current_version": current.version if current else None,
                    "candidate_version": candidate.version,
                    "required_suites": (row.required_suites or {}).get(alias, []),
                }
            gate = await promotion.request_promotion(
                session, backend.temporal, backend.settings, row, version, alias=alias, actor=actor(caller)
            )
            return {"dry_run": False, "gate": gate_view(row, gate)}

    @server.tool(annotations=CHANGE)
    def rollback_alias(
        ctx: Context,
        model: ModelName,
        alias: AliasName = "production",
        reason: Annotated[str | None, Field(max_length=2000, description="Why (kept in the alias's history)")] = None,
        confirm: Confirm = False,
    ) -> dict[str, Any]:
        """Move an alias back to the version it pointed at before its last move."""
        with (
            backend.operation(
                ctx,
                Scope.MODELS_WRITE,
                confirm=confirm,
                action="rollback_alias",
                resource_type="model_alias",
                resource_id=f"{model}@{alias}",
            ) as caller,
            backend.sessions() as session,
        ):
            row = registry.get_model(session, caller.org_id, model)
            if not confirm:
                current, previous = registry.rollback_target(session, row, alias)
                return {
                    "dry_run": True,
                    "would": f"move alias {alias} of model {row.name} back from v{current.version} "
                    f"to v{previous.version}",
                    "from_version": current.version,
                    "to_version": previous.version,
                }
            move = registry.rollback(session, row, alias, actor(caller), reason)
            return {"dry_run": False, "move": move_view(move)}

    # ---------------------------------------------------------------- releases

    @server.tool(annotations=READ)
    def get_release(ctx: Context, model: ModelName, release_id: Id) -> dict[str, Any]:
        """A release's state: its steps, the candidate's weight, its status and reason, and every decision with its
        figures (per version: requests, error rate, p95 latency, answers rated down)."""
        with backend.reading(ctx, Scope.MODELS_READ) as (caller, session):
            row = registry.get_model(session, caller.org_id, model)
            release = releases.get_release(session, row, release_id)
            return releases.release_public(session, row, release).model_dump(mode="json")

    @server.tool(annotations=CHANGE)
    async def start_release(
        ctx: Context,
        model: ModelName,
        candidate_version: Annotated[int, Field(ge=1, le=2**31 - 1)],
        alias: AliasName = "production",
        steps: Annotated[
            list[int] | None, Field(max_length=20, description="Weights in %, rising to 100 (default 10, 50, 100)")
        ] = None,
        confirm: Confirm = False,
    ) -> dict[str, Any]:
        """Release an alias to a candidate version in weighted steps (the API's default thresholds): each step's
        share of the alias's traffic goes to the candidate, each step is analysed, a failing candidate is rolled
        back, too little traffic pauses it, and the last step moves the alias."""
        steps = [10, 50, 100] if steps is None else steps
        with (
            backend.operation(
                ctx,
                Scope.MODELS_WRITE,
                confirm=confirm,
                action="start_release",
                resource_type="model_alias",
                resource_id=f"{model}@{alias}",
            ) as caller,
            backend.sessions() as session,
        ):
            row = registry.get_model(session, caller.org_id, model)
            if not confirm:
                current, candidate = releases.release_target(session, row, candidate_version, alias)
                weights, _ = releases.checked_plan(steps, Thresholds())
                return {
                    "dry_run": True,
                    "would": f"release alias {alias} of model {row.name} from v{current.version} to "
                    f"v{candidate.version} in steps {weights}",
                    "current_version": current.version,
                    "candidate_version": candidate.version,
                }
            release = await releases.start_release(
                session,
                backend.temporal,
                row,
                candidate_version,
                alias=alias,
                steps=steps,
                thresholds=Thresholds(),
                actor=actor(caller),
                settings=backend.settings,
            )
            return {"dry_run": False, "release": releases.release_public(session, row, release).model_dump(mode="json")}

    async def control_release(
        ctx: Context, action: str, model: str, release_id: str, reason: str | None, confirm: bool, *scopes: Scope
    ) -> dict[str, Any]:
        with (
            backend.operation(
                ctx,
                *scopes,
                confirm=confirm,
                action=f"{action}_release",
                resource_type="release",
                resource_id=release_id,
            ) as caller,
            backend.sessions() as session,
        ):
            row = registry.get_model(session, caller.org_id, model)
            release = releases.get_release(session, row, release_id)
            if not confirm:
                allowed, after = releases.RELEASE_CONTROLS[action]
                if release.status not in allowed:
                    raise Conflict(f"cannot {action} release {release.id}: it is {release.status}")
                return {
                    "dry_run": True,
                    "would": f"{action} release {release.id} of {row.name}@{release.alias} "
                    f"(v{release.current_version} -> v{release.candidate_version}, now {release.status} at "
                    f"{release.candidate_weight}%): it would be {after.value}",
                    "status": release.status,
                }
            await releases.control(session, backend.temporal, release, action, actor(caller), reason)
            release = releases.get_release(session, row, release_id)
            return {"dry_run": False, "release": releases.release_public(session, row, release).model_dump(mode="json")}

    @server.tool(annotations=CHANGE)
    async def promote_release(
        ctx: Context, model: ModelName, release_id: Id, reason: Reason = None, confirm: Confirm = False
    ) -> dict[str, Any]:
        """Skip a release's remaining steps and analyses and move its alias to the candidate now (needs
        models:force, as forcing a promotion past the gate does)."""
        return await control_release(
            ctx, "promote", model, release_id, reason, confirm, Scope.MODELS_WRITE, Scope.MODELS_FORCE
        )

    @server.tool(annotations=CHANGE)
    async def abort_release(
        ctx: Context, model: ModelName, release_id: Id, reason: Reason = None, confirm: Confirm = False
    ) -> dict[str, Any]:
        """Stop a release: the candidate's weight goes to 0 and the alias stays where it is."""
        return await control_release(ctx, "abort", model, release_id, reason, confirm, Scope.MODELS_WRITE)
