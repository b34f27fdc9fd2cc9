"""Training answers restated in the passage's own words: one short sentence that takes the fact from the passage
that holds it, so the adapter learns to copy the value it reads rather than to recall one.

A training example whose supporting chunk is known gets, as its answer, the chunk's statement that holds most of
its reference answer, after "Yes, " or "No, " when the reference begins with one. The new answer is kept only when
the example's own fact checks pass on it: a statement that drops the asked fact leaves the reference in place.
"""

from __future__ import annotations

import dataclasses
import re

from facts.judge import judge
from knowledge.grounding import support
from knowledge.index import ChunkRecord
from ml.examples import Example
from ml.generation import statements
from schemas.checks import parse_checks

POLAR_START = re.compile(r"^\s*(yes|no)\b", re.IGNORECASE)


def passage_answer(example: Example, chunk: ChunkRecord) -> str | None:
    """The example's answer in the words of `chunk`, or None when no statement of it passes the example's checks."""
    candidates = statements(chunk.text)
    if not candidates or not example.checks:
        return None
    best = max(candidates, key=lambda s: support(example.answer, s))
    polar = POLAR_START.match(example.answer)
    answer = f"{polar.group(1).capitalize()}, {best[0].lower() + best[1:]}" if polar else best
    return answer if judge(answer, parse_checks(example.checks)).right else None


def in_passage_words(examples: list[Example], chunks: dict[str, ChunkRecord]) -> tuple[list[Example], int]:
    """The examples with each answer restated from its supporting chunk where the checks allow; and how many were."""
    out, restated = [], 0
    for example in examples:
        chunk = chunks.get(example.supporting_chunk_id or "")
        answer = passage_answer(example, chunk) if chunk is not None else None
        if answer is not None and answer != example.answer:
            out.append(dataclasses.replace(example, answer=answer))
            restated += 1
        else:
            out.append(example)
    return out, restated
