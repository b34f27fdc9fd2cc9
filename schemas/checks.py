"""Fact checks: assertions about an answer that decide whether it is right, whatever its wording.

A dataset row may carry `checks`, a list of these; a row without them gets checks derived from its reference answer
(`facts.derive`), each marked `derived`. An answer is right when every check of its row passes (`facts.judge`).

- `contains_any`: the answer holds at least one of `values`;
- `contains_all`: the answer holds every item of `values`; an item that is a list is a set of alternatives;
- `not_contains`: the answer holds none of `values`;
- `regex`: the answer matches `pattern` (Python syntax, searched, case-insensitive);
- `number`: the answer states `value` (within `tolerance`), written as digits or words ("12", "twelve"), followed by
  `unit` when one is given;
- `polarity`: the answer does not assert the opposite of `value` (`yes` | `no`).

Text is compared case-insensitively after normalisation (Unicode NFKC, quotes and dashes unified, whitespace collapsed).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

NonEmpty = Annotated[str, Field(min_length=1, max_length=300)]


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    derived: bool = Field(
        default=False, description="Derived from the reference answer by a rule, not written or reviewed by a person."
    )


class ContainsAny(_Check):
    type: Literal["contains_any"] = "contains_any"
    values: list[NonEmpty] = Field(min_length=1, max_length=20)


class ContainsAll(_Check):
    type: Literal["contains_all"] = "contains_all"
    values: list[NonEmpty | list[NonEmpty]] = Field(min_length=1, max_length=20)

    @field_validator("values")
    @classmethod
    def _alternatives_not_empty(cls, values: list) -> list:
        if any(isinstance(v, list) and not v for v in values):
            raise ValueError("a set of alternatives must hold at least one value")
        return values


class NotContains(_Check):
    type: Literal["not_contains"] = "not_contains"
    values: list[NonEmpty] = Field(min_length=1, max_length=20)


class Regex(_Check):
    type: Literal["regex"] = "regex"
    pattern: Annotated[str, Field(min_length=1, max_length=300)]

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern


class Number(_Check):
    type: Literal["number"] = "number"
    value: float
    unit: Annotated[str, Field(min_length=1, max_length=30)] | None = None
    tolerance: float = Field(default=0, ge=0)


class Polarity(_Check):
    type: Literal["polarity"] = "polarity"
    value: Literal["yes", "no"]


FactCheck = Annotated[ContainsAny | ContainsAll | NotContains | Regex | Number | Polarity, Field(discriminator="type")]
CHECK_TYPES = ("contains_any", "contains_all", "not_contains", "regex", "number", "polarity")
CHECK_LIST = TypeAdapter(list[FactCheck])
MAX_CHECKS_PER_ROW = 20


def parse_checks(raw: object) -> list[FactCheck]:
    """Validated checks from a row's `checks` value; ValueError naming the check and the field at fault."""
    if not isinstance(raw, list):
        raise ValueError("'checks' must be a list of check objects")
    if len(raw) > MAX_CHECKS_PER_ROW:
        raise ValueError(f"'checks' holds {len(raw)} checks; at most {MAX_CHECKS_PER_ROW}")
    try:
        return CHECK_LIST.validate_python(raw)
    except ValidationError as exc:  # say which check and field, in one line
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        known = (
            f" (known types: {', '.join(CHECK_TYPES)})"
            if first["type"] in ("union_tag_invalid", "union_tag_not_found")
            else ""
        )
        raise ValueError(f"'checks.{where}': {first['msg']}{known}") from exc


def dump_checks(checks: list[FactCheck]) -> list[dict]:
    return [check.model_dump(exclude_defaults=False) for check in checks]
