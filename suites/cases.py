"""A suite's cases: what each one asks, and what its answer must satisfy.

A case is one JSON object (one line of a suite's JSONL):
- `id`: unique within the suite (letters, digits, `.`, `_`, `:`, `-`);
- `prompt`, or `messages` (a conversation, `{role, content}` turns ending with the user's): what is asked;
- `knowledge_base_id` (optional): the question is asked with the passages retrieved from that knowledge base, as
  serving would; `context` (optional): passages given with the question as they are (a document with an injected
  instruction, say);
- the assertions, at least one:
  - `checks`: fact checks (`schemas.checks`: contains_any, contains_all, not_contains, regex, number, polarity);
  - `refusal`: `true` when the answer must decline (`facts.refusal`);
  - `max_latency_ms`: the answer takes at most this long;
  - `json_schema`: the answer parses as JSON and validates against this JSON Schema;
  - `judge`: `{"rubric": "..."}`: the organization's judge (an OpenAI-compatible endpoint it configures:
    `teacher.judge`) reads the question and the answer with the rubric and replies PASS or FAIL.

A case passes when every assertion it holds passes. A suite's content hash is the sha256 of its cases' canonical
JSON (keys sorted, no spaces, whole numbers without `.0`), in order: two suites with the same cases hash alike,
whatever their key order.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.checks import FactCheck, dump_checks, parse_checks

CASE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
MAX_CASES = 500
MAX_TEXT = 8000
NO_NUL = r"^[^\x00]*$"  # PostgreSQL cannot store NUL in text


class SuiteInvalid(ValueError):
    """A suite that cannot be kept: the message names the case (by id, or by position) and the field at fault."""


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]


class JudgeAssertion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rubric: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=CASE_ID)]
    prompt: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)] | None = None
    messages: Annotated[list[Message], Field(min_length=1, max_length=50)] | None = None
    knowledge_base_id: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)] | None = None
    context: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]], Field(max_length=20)
    ] = []
    checks: list[FactCheck] = []
    refusal: bool = False
    max_latency_ms: Annotated[int, Field(ge=1, le=3_600_000)] | None = None
    json_schema: dict[str, Any] | None = None
    judge: JudgeAssertion | None = None

    @field_validator("checks", mode="before")
    @classmethod
    def _checks(cls, raw: object) -> list[FactCheck]:
        return parse_checks(raw)

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            try:
                validator_for(schema).check_schema(schema)
            except SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        return schema

    @model_validator(mode="after")
    def _asks_and_asserts(self) -> Case:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a case holds either 'prompt' or 'messages'")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("'messages' must end with the user's turn")
        if not (self.checks or self.refusal or self.max_latency_ms or self.json_schema is not None or self.judge):
            raise ValueError(
                "a case needs at least one assertion: checks, refusal, max_latency_ms, json_schema or judge"
            )
        return self

    @property
    def question(self) -> str:
        """What the model answers: the prompt, or the conversation's last (user) turn."""
        return self.prompt if self.prompt is not None else self.messages[-1].content  # type: ignore[index]

    @property
    def history(self) -> list[dict[str, str]]:
        """The conversation's turns before the question (none for a prompt)."""
        return [m.model_dump() for m in (self.messages or [])[:-1]]

    def record(self) -> dict[str, Any]:
        """The case as stored and exported: only the fields it sets, checks with every field."""
        record = self.model_dump(exclude_defaults=True, exclude={"checks"})
        if self.checks:
            record["checks"] = dump_checks(self.checks)
        return record


def parse_case(raw: object, position: int) -> Case:
    """One validated case; SuiteInvalid naming the case (its id, else its position from 1) and the field."""
    name = f"case {raw['id']!r}" if isinstance(raw, dict) and isinstance(raw.get("id"), str) else f"case #{position}"
    if not isinstance(raw, dict):
        raise SuiteInvalid(f"{name}: a case is a JSON object")
    try:
        return Case.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SuiteInvalid(f"{name}: {f'{where!r}: ' if where else ''}{message}") from exc


def parse_cases(raw: object) -> list[Case]:
    """A suite's validated cases: a non-empty list, at most MAX_CASES, with unique ids."""
    if not isinstance(raw, list) or not raw:
        raise SuiteInvalid("'cases' must be a non-empty list of case objects")
    if len(raw) > MAX_CASES:
        raise SuiteInvalid(f"'cases' holds {len(raw)} cases; at most {MAX_CASES}")
    cases = [parse_case(item, i) for i, item in enumerate(raw, start=1)]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise SuiteInvalid(f"case {case.id!r}: 'id' is not unique in the suite")
        seen.add(case.id)
    return cases


def canonical(case: Case) -> str:
    """The case's JSON with keys sorted, no spaces, UTF-8 kept, and whole numbers written alike (`4`, not `4.0`)."""
    return json.dumps(_whole(case.record()), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def content_hash(cases: list[Case]) -> str:
    """sha256 over the cases' canonical JSON lines, in order."""
    digest = hashlib.sha256()
    for case in cases:
        digest.update(canonical(case).encode() + b"\n")
    return digest.hexdigest()


def to_jsonl(cases: list[Case]) -> str:
    """The suite as JSONL, one canonical case a line: importing it gives back the same cases and the same hash."""
    return "".join(canonical(case) + "\n" for case in cases)


def from_jsonl(text: str) -> list[Case]:
    """Cases from JSONL (blank lines skipped); SuiteInvalid naming the line that is not JSON."""
    raw = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SuiteInvalid(f"line {number}: not JSON ({exc.msg})") from exc
    return parse_cases(raw)
