"""A stale row once its document's change is written in: a proposed answer and checks, for a user to accept.

`facts.staleness` finds a row whose checks ask for a value that a new document version no longer states, with the
value that takes its place. The proposal writes that change into the row:
- a changed value (a number, a price, a code, a name): each place where the answer and the checks state the old value
  (as written there: "$899", "7410", "FL-204") states the new one; a number is matched as a number, so "7410" in
  "port 7410." changes and "17410" does not;
- a yes/no row whose sentence now says the opposite: the answer is the opposite word followed by the new sentence
  ("No, the web console is served over HTTPS on TCP port 7420."), its `polarity` check flips, and of its other checks
  only those the new answer still passes are kept.

No proposal when the change cannot be written in: the sentence was dropped, the document gives no value in the old
one's place, the answer states the old value in words ("ten minutes"), or the proposed answer would fail its own
proposed checks. Such a row is corrected by hand. A proposal is never applied by itself: the row stays stale (out of
training and of the gate's questions) until a user accepts it or writes another correction (`wlops knowledge
stale-rows --accept-proposals`, or an annotation of the dataset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from facts.judge import judge
from schemas.checks import dump_checks, parse_checks

_NUMBER = re.compile(r"^\$?\s?(\d+(?:\.\d+)?)(?:\s*(\S.*))?$")
POLAR = ("yes", "no")


@dataclass(frozen=True)
class Proposal:
    answer: str
    checks: list[dict[str, Any]]


def propose(
    answer: str, checks: list[dict[str, Any]], old_value: str, new_value: str | None, new_sentence: str | None
) -> Proposal | None:
    """The row's answer and checks with the document's change written in (the module's rule), or None."""
    if new_value is None or new_sentence is None:
        return None
    if old_value in POLAR and new_value in POLAR:
        return _flipped(answer, checks, new_value, new_sentence)
    replace = value_replacer(old_value, new_value)
    proposed_answer = replace(answer)
    if proposed_answer == answer:  # the answer does not state the value as written: a person rewrites it
        return None
    numbers = _numbers(old_value, new_value)
    return _checked(proposed_answer, [_replace_in_check(check, numbers, replace) for check in checks])


def _flipped(answer: str, checks: list[dict[str, Any]], new_value: str, new_sentence: str) -> Proposal | None:
    sentence = new_sentence.strip()
    proposed_answer = f"{new_value.capitalize()}, {sentence[:1].lower() + sentence[1:]}"
    flipped = [{**c, "value": new_value} if c.get("type") == "polarity" else c for c in checks]
    kept = [c for c in flipped if c.get("type") == "polarity" or judge(proposed_answer, parse_checks([c])).right]
    return _checked(proposed_answer, kept)


def _checked(answer: str, checks: list[dict[str, Any]]) -> Proposal | None:
    """The proposal, when its answer passes its checks."""
    try:
        parsed = parse_checks(checks)
    except ValueError:
        return None
    if not parsed or not judge(answer, parsed).right:
        return None
    return Proposal(answer, dump_checks(parsed))


def value_replacer(old_value: str, new_value: str):
    """A function that writes `new_value` wherever a text states `old_value`: a number as a number (its unit and `$`
    left as written), a term as a whole word, case-insensitively."""
    numbers = _numbers(old_value, new_value)
    if numbers:
        old_number, new_number = numbers
        pattern = re.compile(r"(?<![\d.,])" + re.escape(old_number) + r"(?![\d]|[.,]\d)")
        return lambda text: pattern.sub(new_number, text)
    word = re.compile(
        (r"(?<!\w)" if old_value[:1].isalnum() else "")
        + re.escape(old_value)
        + (r"(?!\w)" if old_value[-1:].isalnum() else ""),
        re.IGNORECASE,
    )
    return lambda text: word.sub(new_value, text)


def _numbers(old_value: str, new_value: str) -> tuple[str, str] | None:
    """The digits of the old and the new value when both are numbers ("$899" → "899"), else None."""
    old_number, new_number = _NUMBER.match(old_value.strip()), _NUMBER.match(new_value.strip())
    return (old_number.group(1), new_number.group(1)) if old_number and new_number else None


def _replace_in_check(check: dict[str, Any], numbers: tuple[str, str] | None, replace) -> dict[str, Any]:
    kind = check.get("type")
    if kind == "number":
        if numbers and float(numbers[0]) == float(check.get("value", "nan")):
            return {**check, "value": float(numbers[1])}
        return check
    if kind in ("contains_any", "contains_all", "not_contains"):
        return {
            **check,
            "values": [
                [replace(v) for v in item] if isinstance(item, list) else replace(item) for item in check["values"]
            ],
        }
    return check
