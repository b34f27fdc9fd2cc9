"""Scenario suites: keep their versions, run one against a model version (the run's workflow answers its cases), read
the runs, compare two of them case by case, and the suites a promotion to an alias must pass.

A suite is a sequence of immutable versions under one name in one organization: each holds its cases (validated by
`suites.cases`), their content hash and whether a failing case refuses a promotion (`blocking`). A run names the exact
suite version (and its hash) and the exact model version (name@3, or a base model) it answered with.

Every lookup is inside one organization (`org_id`): another tenant's suite or run is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio.service import RPCError

from core.clock import utcnow
from core.errors import Conflict, Invalid, NotFound, Unavailable
from core.settings import TASK_QUEUE_WORKFLOWS, Settings
from core.status import SuiteRunStatus
from db.models import ModelVersion, PromotionGate, RegisteredModel, Suite, SuiteRun, new_id
from db.session import page
from schemas.workflow_io import ActivityTimeouts, SuiteRunInput
from services import registry  # (the registry's gate reaches back here: names are read when called)
from services.tasks import Temporal
from suites.cases import Case, SuiteInvalid, content_hash, from_jsonl, parse_cases, to_jsonl
from suites.compare import Comparison, compare_runs
from temporal_client.workflows import SuiteRunWorkflow


def suite_run_workflow_id(run_id: str) -> str:
    return f"suite-run-{run_id}"


# ---------------------------------------------------------------- suites


def checked_cases(raw: object) -> list[Case]:
    """The cases (a list of case objects, or JSONL text), validated: Invalid (422) naming the case and the field, and
    nothing stored."""
    try:
        return from_jsonl(raw) if isinstance(raw, str) else parse_cases(raw)
    except SuiteInvalid as exc:
        raise Invalid(str(exc)) from exc


def create_suite(
    session: Session,
    org_id: str,
    name: str,
    cases: object,
    *,
    blocking: bool,
    description: str | None,
    created_by: str | None,
) -> Suite:
    """Version 1 of a new suite; Conflict if the name is taken in the organization."""
    if not registry.MODEL_NAME.fullmatch(name):
        raise Invalid("name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100")
    if _latest(session, org_id, name) is not None:
        raise Conflict(f"suite {name} already exists: add a version to it")
    return _add(session, org_id, name, 1, checked_cases(cases), blocking, description, created_by)


def add_version(
    session: Session,
    org_id: str,
    name: str,
    cases: object,
    *,
    blocking: bool | None,
    description: str | None,
    created_by: str | None,
    base_version: int | None = None,
) -> Suite:
    """The suite's next version (blocking and description carried over unless given); Conflict if `base_version` is
    no longer the latest, or another writer took the number first."""
    latest = get_suite(session, org_id, name)
    if base_version is not None and base_version != latest.version:
        raise Conflict(f"suite {name} is at version {latest.version}, not {base_version}")
    return _add(
        session,
        org_id,
        name,
        latest.version + 1,
        checked_cases(cases),
        latest.blocking if blocking is None else blocking,
        latest.description if description is None else description,
        created_by,
    )


def _add(
    session: Session,
    org_id: str,
    name: str,
    version: int,
    cases: list[Case],
    blocking: bool,
    description: str | None,
    created_by: str | None,
) -> Suite:
    suite = Suite(
        id=new_id(),
        org_id=org_id,
        name=name,
        version=version,
        content_hash=content_hash(cases),
        blocking=blocking,
        description=description,
        cases=[case.record() for case in cases],
        case_count=len(cases),
        created_by=created_by,
    )
    session.add(suite)
    try:
        session.commit()
    except IntegrityError as exc:  # another writer took this version number first
        session.rollback()
        raise Conflict(f"suite {name} got version {version} from another request meanwhile; try again") from exc
    return suite


def _latest(session: Session, org_id: str, name: str) -> Suite | None:
    return session.scalars(
        select(Suite).where(Suite.org_id == org_id, Suite.name == name).order_by(Suite.version.desc())
    ).first()


def get_suite(session: Session, org_id: str, name: str, version: int | None = None) -> Suite:
    """The suite's `version`, or its latest."""
    if version is None:
        suite = _latest(session, org_id, name)
    else:
        suite = session.scalar(
            select(Suite).where(Suite.org_id == org_id, Suite.name == name, Suite.version == version)
        )
    if suite is None:
        raise NotFound(f"suite {name}{f' version {version}' if version else ''} not found")
    return suite


def list_suites(session: Session, org_id: str, limit: int, offset: int) -> tuple[list[Suite], int]:
    """The latest version of each suite, by name."""
    latest = (
        select(Suite.name, func.max(Suite.version).label("version"))
        .where(Suite.org_id == org_id)
        .group_by(Suite.name)
        .subquery()
    )
    query = select(Suite).join(latest, (Suite.name == latest.c.name) & (Suite.version == latest.c.version))
    return page(session, query.where(Suite.org_id == org_id), Suite.name, limit=limit, offset=offset)


def versions_of(session: Session, org_id: str, name: str) -> list[Suite]:
    get_suite(session, org_id, name)
    return list(
        session.scalars(select(Suite).where(Suite.org_id == org_id, Suite.name == name).order_by(Suite.version))
    )


def cases_of(suite: Suite) -> list[Case]:
    return parse_cases(suite.cases)


def export_jsonl(suite: Suite) -> str:
    """The version's cases as JSONL: importing it gives a suite with the same content hash."""
    return to_jsonl(cases_of(suite))


# ---------------------------------------------------------------- runs


def new_run(
    session: Session,
    org_id: str,
    suite: Suite,
    served: registry.Served,
    *,
    requested_by: str | None,
    gate_id: str | None = None,
    release_id: str | None = None,
    commit: bool = True,
) -> SuiteRun:
    """A RUNNING run of `suite` against the version (or base model) `served` names."""
    run = SuiteRun(
        id=new_id(),
        org_id=org_id,
        suite_id=suite.id,
        suite_name=suite.name,
        suite_version=suite.version,
        content_hash=suite.content_hash,
        model=served.label,
        model_id=served.version.model_id if served.version else None,
        model_version=served.version.version if served.version else None,
        status=SuiteRunStatus.RUNNING.value,
        results=[],
        total=suite.case_count,
        passed=0,
        failed=0,
        gate_id=gate_id,
        release_id=release_id,
        requested_by=requested_by,
    )
    session.add(run)
    if commit:
        session.commit()
    return run


async def start_run(
    session: Session,
    temporal: Temporal,
    settings: Settings,
    org_id: str,
    name: str,
    reference: str,
    *,
    version: int | None,
    requested_by: str | None,
) -> SuiteRun:
    """Run the suite's `version` (its latest by default) against `reference`, in a SuiteRunWorkflow."""
    suite = get_suite(session, org_id, name, version)
    run = new_run(
        session, org_id, suite, registry.resolve_served(session, org_id, reference), requested_by=requested_by
    )
    try:
        client = await temporal()
        await client.start_workflow(
            SuiteRunWorkflow.run,
            SuiteRunInput(run_id=run.id, timeouts=run_timeouts(settings)),
            id=suite_run_workflow_id(run.id),
            task_queue=TASK_QUEUE_WORKFLOWS,
        )
    except (RPCError, Unavailable) as exc:
        session.delete(run)  # nothing started: leave no run behind
        session.commit()
        raise Unavailable(f"could not start the suite's run on Temporal: {getattr(exc, 'message', exc)}") from exc
    return run


def run_timeouts(settings: Settings) -> ActivityTimeouts:
    return ActivityTimeouts(
        evaluate_seconds=settings.gate_evaluate_seconds,
        heartbeat_seconds=settings.heartbeat_timeout_seconds,
        max_attempts=settings.activity_max_attempts,
    )


def get_run(session: Session, org_id: str, run_id: str, name: str | None = None) -> SuiteRun:
    """The run, in the organization (and of the suite `name`, when given)."""
    run = session.get(SuiteRun, run_id)
    if run is None or run.org_id != org_id or (name is not None and run.suite_name != name):
        raise NotFound(f"suite run {run_id} not found{f' in suite {name}' if name else ''}")
    return run


def list_runs(session: Session, org_id: str, name: str | None, limit: int, offset: int) -> tuple[list[SuiteRun], int]:
    """Runs, newest first; of one suite (any version) when `name` is given."""
    query = select(SuiteRun).where(SuiteRun.org_id == org_id)
    if name is not None:
        get_suite(session, org_id, name)
        query = query.where(SuiteRun.suite_name == name)
    return page(session, query, SuiteRun.created_at.desc(), SuiteRun.id, limit=limit, offset=offset)


@dataclass(frozen=True)
class RunTarget:
    """What a run's activity needs to answer: the cases, and the model with its adapter and retrieval settings."""

    cases: list[Case]
    base_model: str
    adapter_key: str | None
    retrieval_top_k: int
    context_statements: int | None = None  # the version's: retrieved passages cut to this many statements


def run_target(session: Session, run_id: str) -> RunTarget:
    run = session.get_one(SuiteRun, run_id)
    suite = session.get_one(Suite, run.suite_id)
    if run.model_id is None:
        return RunTarget(cases_of(suite), run.model, None, 3)
    model = session.get_one(RegisteredModel, run.model_id)
    version = registry.get_version(session, model, run.model_version or 0)
    return RunTarget(
        cases_of(suite),
        model.base_model,
        version.adapter_key,
        version.retrieval_top_k or 3,
        version.context_statements,
    )


def record_results(session: Session, run_id: str, results: list[dict]) -> SuiteRun:
    """Store each case's answer and verdict, and the totals: the run is COMPLETED (a retry changes nothing)."""
    run = session.get_one(SuiteRun, run_id, with_for_update=True)
    if run.status == SuiteRunStatus.RUNNING.value:
        run.results = results
        run.passed = sum(1 for r in results if r["passed"])
        run.failed = len(results) - run.passed
        run.total = len(results)
        run.status, run.finished_at = SuiteRunStatus.COMPLETED.value, utcnow()
    session.commit()
    return run


def fail_run(session: Session, run_id: str, error: str, *, commit: bool = True) -> None:
    run = session.get(SuiteRun, run_id, with_for_update=True)
    if run is not None and run.status == SuiteRunStatus.RUNNING.value:
        run.status, run.error, run.finished_at = SuiteRunStatus.FAILED.value, error, utcnow()
    if commit:
        session.commit()


def compare(
    session: Session, org_id: str, name: str, before_id: str | None, after_id: str | None
) -> tuple[SuiteRun, SuiteRun, Comparison]:
    """Two completed runs of the suite `name`, case by case (cases paired by id, across the suite's versions); by
    default its latest completed run (`after`) and the completed one before it (`before`)."""
    get_suite(session, org_id, name)
    after = get_run(session, org_id, after_id, name) if after_id else None
    before = get_run(session, org_id, before_id, name) if before_id else None
    if after is None or before is None:
        completed = session.scalars(
            select(SuiteRun)
            .where(
                SuiteRun.org_id == org_id,
                SuiteRun.suite_name == name,
                SuiteRun.status == SuiteRunStatus.COMPLETED.value,
            )
            .order_by(SuiteRun.created_at.desc(), SuiteRun.id.desc())
        )
        later = [run for run in completed if after is None or run.created_at < after.created_at]
        after = after or next(iter(later), None)
        before = before or next((run for run in later if run is not after), None)
        if after is None or before is None:
            raise Conflict(f"suite {name} needs two completed runs to compare")
    for run in (before, after):
        if run.status != SuiteRunStatus.COMPLETED.value:
            raise Conflict(f"suite run {run.id} is {run.status}: only completed runs are compared")
    return (
        before,
        after,
        compare_runs(
            {r["case_id"]: r["passed"] for r in before.results}, {r["case_id"]: r["passed"] for r in after.results}
        ),
    )


# ---------------------------------------------------------------- the suites a promotion must pass


def require_suites(session: Session, model: RegisteredModel, alias: str, names: list[str]) -> list[str]:
    """The suites a promotion to `alias` runs from now on (their latest version at the time); NotFound for a suite
    that does not exist."""
    names = list(dict.fromkeys(names))
    for name in names:
        get_suite(session, model.org_id, name)
    required = {k: v for k, v in (model.required_suites or {}).items() if k != alias}
    model.required_suites = {**required, alias: names} if names else required
    session.commit()
    return names


def open_gate_runs(session: Session, gate: PromotionGate, model: RegisteredModel, candidate: ModelVersion) -> None:
    """A RUNNING run, against the candidate, of the latest version of each suite the gate's alias requires (the
    caller commits, with the gate)."""
    served = registry.Served(f"{model.name}@{candidate.version}", model.base_model, candidate)
    for name in (model.required_suites or {}).get(gate.alias, []):
        suite = _latest(session, model.org_id, name)
        if suite is not None:
            new_run(session, model.org_id, suite, served, requested_by=gate.requested_by, gate_id=gate.id, commit=False)


def open_release_runs(
    session: Session,
    release_id: str,
    alias: str,
    model: RegisteredModel,
    candidate: ModelVersion,
    requested_by: str | None,
) -> list[SuiteRun]:
    """A RUNNING run, against the candidate, of the latest version of each *blocking* suite the release's alias
    requires (the caller commits, with the release)."""
    served = registry.Served(f"{model.name}@{candidate.version}", model.base_model, candidate)
    runs = []
    for name in (model.required_suites or {}).get(alias, []):
        suite = _latest(session, model.org_id, name)
        if suite is not None and suite.blocking:
            runs.append(
                new_run(
                    session, model.org_id, suite, served, requested_by=requested_by, release_id=release_id, commit=False
                )
            )
    return runs


def release_runs(session: Session, release_id: str) -> list[SuiteRun]:
    query = select(SuiteRun).where(SuiteRun.release_id == release_id).order_by(SuiteRun.suite_name)
    return list(session.scalars(query))


def gate_runs(session: Session, gate_id: str) -> list[SuiteRun]:
    return list(session.scalars(select(SuiteRun).where(SuiteRun.gate_id == gate_id).order_by(SuiteRun.suite_name)))


MAX_NAMED_CASES = 5


def gate_verdict(session: Session, gate_id: str) -> tuple[list[dict], str | None]:
    """What the gate's suite runs found (a figure per suite), and the refusal when a blocking suite has a failing case
    or could not run (None when none did)."""
    return runs_verdict(session, gate_runs(session, gate_id))


def runs_verdict(session: Session, runs: list[SuiteRun]) -> tuple[list[dict], str | None]:
    """What suite runs found (a figure per suite), and the refusal when a blocking suite has a failing case or could
    not run (None when none did)."""
    figures, failures = [], []
    for run in runs:
        blocking = session.get_one(Suite, run.suite_id).blocking
        failed = [r for r in run.results if not r["passed"]]
        figures.append(
            {
                "suite": run.suite_name,
                "version": run.suite_version,
                "content_hash": run.content_hash,
                "run_id": run.id,
                "blocking": blocking,
                "status": run.status,
                "passed": run.passed,
                "failed": run.failed,
                "failed_cases": [r["case_id"] for r in failed],
            }
        )
        if not blocking:
            continue
        if run.status != SuiteRunStatus.COMPLETED.value:
            failures.append(f"blocking suite {run.suite_name} v{run.suite_version} did not run ({run.error})")
        for result in failed[:MAX_NAMED_CASES]:
            why = "; ".join(f"{a['assertion']}: {a['detail']}" for a in result["results"] if not a["passed"])
            failures.append(
                f"blocking suite {run.suite_name} v{run.suite_version} failed case {result['case_id']!r} ({why})"
            )
        if len(failed) > MAX_NAMED_CASES:
            failures.append(f"and {len(failed) - MAX_NAMED_CASES} more of {run.suite_name}")
    return figures, ("refused: " + "; ".join(failures)) if failures else None
