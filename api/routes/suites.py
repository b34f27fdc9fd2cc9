"""Scenario suites: create one (JSON, or a JSONL import), list, read a version with its cases, add a version, export
as JSONL; run one against a model version, list its runs, read a run (each case's answer and verdict), compare two
runs case by case."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile

from api.deps import Offset, SessionDep, SettingsDep, TemporalDep
from api.security import ModelsRead, ModelsWrite
from core.errors import Invalid, TooLarge
from db.models import Suite, SuiteRun
from schemas.api import (
    MODEL_NAME,
    NO_NUL,
    CaseResult,
    SuiteComparison,
    SuiteCreate,
    SuiteList,
    SuitePublic,
    SuiteRunList,
    SuiteRunPublic,
    SuiteRunRequest,
    SuiteRunSummary,
    SuiteSummary,
    SuiteVersionCreate,
    SuiteVersionList,
)
from services import suites as service

router = APIRouter(prefix="/api/v1/suites", tags=["suites"])
MAX_IMPORT_BYTES = 5 * 1024 * 1024
SuiteVersion = Annotated[int | None, Query(ge=1, le=1_000_000, description="Default: the latest version")]
RunId = Annotated[str, Path(max_length=64, pattern=NO_NUL)]


def summary(suite: Suite) -> SuiteSummary:
    return SuiteSummary(
        suite_id=suite.id, **{k: getattr(suite, k) for k in SuiteSummary.model_fields if k != "suite_id"}
    )


def public(suite: Suite) -> SuitePublic:
    return SuitePublic(**summary(suite).model_dump(), cases=suite.cases)


def run_summary(run: SuiteRun) -> SuiteRunSummary:
    return SuiteRunSummary(run_id=run.id, **{k: getattr(run, k) for k in SuiteRunSummary.model_fields if k != "run_id"})


def created(response: Response, suite: Suite) -> SuitePublic:
    response.headers["Location"] = f"{router.prefix}/{suite.name}?version={suite.version}"
    return public(suite)


@router.post("", status_code=201, response_model=SuitePublic)
def create_suite(caller: ModelsWrite, session: SessionDep, body: SuiteCreate, response: Response) -> SuitePublic:
    """Version 1 of a new suite (409 if the name is taken)."""
    suite = service.create_suite(
        session,
        caller.org_id,
        body.name,
        body.cases,
        blocking=body.blocking,
        description=body.description,
        created_by=caller.user_id,
    )
    return created(response, suite)


@router.post("/import", status_code=201, response_model=SuitePublic)
def import_suite(
    caller: ModelsWrite,
    session: SessionDep,
    response: Response,
    file: Annotated[UploadFile, File(description="JSONL: one case a line (what GET .../export gives)")],
    name: Annotated[str, Form(pattern=MODEL_NAME, max_length=100)],
    blocking: Annotated[bool, Form()] = False,
    description: Annotated[str | None, Form(max_length=2000, pattern=NO_NUL)] = None,
) -> SuitePublic:
    """Version 1 of a new suite from a JSONL file."""
    data = file.file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise TooLarge(f"file: a suite's JSONL is at most {MAX_IMPORT_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise Invalid("file: not UTF-8 text") from exc
    suite = service.create_suite(
        session, caller.org_id, name, text, blocking=blocking, description=description, created_by=caller.user_id
    )
    return created(response, suite)


@router.get("", response_model=SuiteList)
def list_suites(
    caller: ModelsRead, session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Offset = 0
) -> SuiteList:
    """The latest version of each suite, by name."""
    rows, total = service.list_suites(session, caller.org_id, limit, offset)
    return SuiteList(items=[summary(s) for s in rows], total=total, limit=limit, offset=offset)


@router.get("/{suite_name}", response_model=SuitePublic)
def get_suite(caller: ModelsRead, session: SessionDep, suite_name: str, version: SuiteVersion = None) -> SuitePublic:
    return public(service.get_suite(session, caller.org_id, suite_name, version))


@router.get("/{suite_name}/versions", response_model=SuiteVersionList)
def list_versions(caller: ModelsRead, session: SessionDep, suite_name: str) -> SuiteVersionList:
    """Every version, oldest first, with its content hash."""
    return SuiteVersionList(
        name=suite_name, items=[summary(s) for s in service.versions_of(session, caller.org_id, suite_name)]
    )


@router.post("/{suite_name}/versions", status_code=201, response_model=SuitePublic)
def add_version(
    caller: ModelsWrite, session: SessionDep, suite_name: str, body: SuiteVersionCreate, response: Response
) -> SuitePublic:
    """The suite's next version; runs and gates that named an earlier one keep it."""
    suite = service.add_version(
        session,
        caller.org_id,
        suite_name,
        body.cases,
        blocking=body.blocking,
        description=body.description,
        created_by=caller.user_id,
        base_version=body.base_version,
    )
    return created(response, suite)


@router.get(
    "/{suite_name}/export",
    response_class=Response,
    responses={200: {"content": {"application/jsonl": {}}, "description": "One case a line"}},
)
def export_suite(caller: ModelsRead, session: SessionDep, suite_name: str, version: SuiteVersion = None) -> Response:
    suite = service.get_suite(session, caller.org_id, suite_name, version)
    return Response(
        service.export_jsonl(suite),
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{suite.name}-v{suite.version}.jsonl"'},
    )


@router.post("/{suite_name}/runs", status_code=202, response_model=SuiteRunPublic)
async def run_suite(
    caller: ModelsWrite,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    suite_name: str,
    body: SuiteRunRequest,
    response: Response,
) -> SuiteRunPublic:
    """Run the suite against a model version: 202 with the run, whose answers and verdicts GET .../runs/{run_id}
    shows once it is COMPLETED."""
    run = await service.start_run(
        session,
        temporal,
        settings,
        caller.org_id,
        suite_name,
        body.model,
        version=body.version,
        requested_by=caller.user_id,
    )
    response.headers["Location"] = f"{router.prefix}/{suite_name}/runs/{run.id}"
    return SuiteRunPublic(**run_summary(run).model_dump(), results=[])


@router.get("/{suite_name}/runs", response_model=SuiteRunList)
def list_runs(
    caller: ModelsRead,
    session: SessionDep,
    suite_name: str,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> SuiteRunList:
    """The suite's runs (any version), newest first."""
    rows, total = service.list_runs(session, caller.org_id, suite_name, limit, offset)
    return SuiteRunList(items=[run_summary(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{suite_name}/runs/{run_id}", response_model=SuiteRunPublic)
def get_run(caller: ModelsRead, session: SessionDep, suite_name: str, run_id: RunId) -> SuiteRunPublic:
    """The run with each case's answer, latency and verdict (every assertion with its detail)."""
    run = service.get_run(session, caller.org_id, run_id, suite_name)
    return SuiteRunPublic(**run_summary(run).model_dump(), results=[CaseResult(**r) for r in run.results])


@router.get("/{suite_name}/compare", response_model=SuiteComparison)
def compare_runs(
    caller: ModelsRead,
    session: SessionDep,
    suite_name: str,
    before: Annotated[
        str | None,
        Query(max_length=64, pattern=NO_NUL, description="The earlier run (default: the completed run before `after`)"),
    ] = None,
    after: Annotated[
        str | None, Query(max_length=64, pattern=NO_NUL, description="The later run (default: the latest completed)")
    ] = None,
) -> SuiteComparison:
    """Two completed runs of the suite case by case: fixed, broken, still wrong, still right, with the paired test."""
    first, second, comparison = service.compare(session, caller.org_id, suite_name, before, after)
    return SuiteComparison(before=run_summary(first), after=run_summary(second), **comparison.to_json())
