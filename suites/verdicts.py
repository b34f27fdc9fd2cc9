"""The verdict on one case's answer: each assertion passes or fails with a reason, and the case passes when all do."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from jsonschema.validators import validator_for

from facts.judge import judge
from facts.refusal import declines
from suites.cases import Case


@dataclass(frozen=True)
class AssertionResult:
    assertion: str  # "refusal", "max_latency_ms", "json_schema", "judge", or "check <type>"
    passed: bool
    detail: str


@dataclass(frozen=True)
class CaseVerdict:
    passed: bool
    results: list[AssertionResult]

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def reason(self) -> str:
        """The failed assertions, in one line ("" when it passed)."""
        return "; ".join(f"{r.assertion}: {r.detail}" for r in self.results if not r.passed)


# the organization's judge: (rubric, question, answer) -> passed, and the judge's words
Grader = Callable[[str, str, str], tuple[bool, str]]
NO_JUDGE = "no judge is configured for the organization (set judge_url and judge_model: PATCH /api/v1/orgs/{id})"


def judge_case(case: Case, answer: str, latency_ms: int, grader: Grader | None = None) -> CaseVerdict:
    """Every assertion of `case` on `answer`, which took `latency_ms` to produce; a `judge` assertion asks `grader`
    (and fails, saying so, without one)."""
    results: list[AssertionResult] = []
    if case.checks:
        verdict = judge(answer, case.checks)
        results += [AssertionResult(f"check {check.type}", r.passed, r.detail) for check, r in verdict.results]
        if not answer.strip():
            results.append(AssertionResult("checks", False, "no answer"))
    if case.refusal:
        refused = declines(answer)
        results.append(AssertionResult("refusal", refused.passed, refused.detail))
    if case.max_latency_ms is not None:
        results.append(
            AssertionResult(
                "max_latency_ms",
                latency_ms <= case.max_latency_ms,
                f"answered in {latency_ms} ms (at most {case.max_latency_ms})",
            )
        )
    if case.json_schema is not None:
        results.append(_json_schema(case.json_schema, answer))
    if case.judge is not None:
        if grader is None:
            results.append(AssertionResult("judge", False, NO_JUDGE))
        else:
            passed, detail = grader(case.judge.rubric, case.question, answer)
            results.append(AssertionResult("judge", passed, detail))
    return CaseVerdict(all(r.passed for r in results), results)


def _json_schema(schema: dict, answer: str) -> AssertionResult:
    try:
        value = json.loads(answer)
    except json.JSONDecodeError as exc:
        return AssertionResult("json_schema", False, f"the answer is not JSON ({exc.msg})")
    error = next(iter(validator_for(schema)(schema).iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the answer"
        return AssertionResult("json_schema", False, f"{where}: {error.message}")
    return AssertionResult("json_schema", True, "valid")
