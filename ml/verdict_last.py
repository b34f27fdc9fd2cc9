"""Yes/no answers written with the fact first and the verdict last: "No, single sign-on is available only with an
Enterprise license." becomes "single sign-on is available only with an Enterprise license, so no." (the first word
keeps its case: it may be a command).

A model that opens with "Yes" or "No" commits to its verdict before it has written a word of the passage; this one
copies the statement first, and the verdict is its last token, conditioned on it. The judge reads a closing verdict
("…, so no.") as the answer's stance (`facts.judge.stance`).
"""

from __future__ import annotations

import dataclasses
import re

from ml.examples import Example
from ml.polarity_balance import polarity_of

_LEADING_VERDICT = re.compile(r"^\s*(yes|no)\b[\s,.;:!-]*", re.IGNORECASE)


def verdict_last(answer: str, polarity: str) -> str:
    """`answer` with its leading "Yes"/"No" moved to the end as "…, so yes."; an answer that opens with no verdict
    gets its row's at the end; a bare "No." stays as it is. The first word keeps its case (it may be a command)."""
    match = _LEADING_VERDICT.match(answer)
    rest = answer[match.end() :].strip() if match else answer.strip()
    if not rest:
        return answer
    return f"{rest.rstrip('.!').rstrip()}, so {polarity}."


def with_verdicts_last(examples: list[Example]) -> list[Example]:
    """Every yes/no row (one with a `polarity` check) answered fact first, verdict last; the other rows as they are."""
    out = []
    for example in examples:
        polarity = polarity_of(example)
        out.append(dataclasses.replace(example, answer=verdict_last(example.answer, polarity)) if polarity else example)
    return out
