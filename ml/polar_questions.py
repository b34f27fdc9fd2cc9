"""Yes/no questions with both answers, written from a knowledge base's statements, so that "Yes" stops being a safe
guess.

Each statement that holds a specific value (a number with its unit, a code, a path, a name: `ml.generation.SPECIFIC`)
gives two questions: one that states it as written, answered "Yes, <statement>", and one with that value swapped
for another value of the same kind found elsewhere in the knowledge base (another port, another price, another
operating system), answered "No, <statement>". The model learns to check the asked value against its passage
instead of agreeing. The questions are templates, not a model's writing; the answer is the statement itself, in the
passage's own words, with a polarity check.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from knowledge.index import ChunkRecord
from ml.examples import Example
from ml.generation import specific_span, statements
from schemas.checks import Polarity, dump_checks

TEMPLATES = ("Is it true that {claim}?", "Is it correct that {claim}?", "Can you confirm that {claim}?")
UNIT = re.compile(r"[A-Za-z%$]+")


@dataclass(frozen=True)
class ValueSpan:
    kind: str  # which SPECIFIC pattern found it, and for a number its unit: values only swap within a kind
    start: int
    end: int
    text: str


def value_span(statement: str) -> ValueSpan | None:
    """The statement's most specific value (`ml.generation.specific_span`)."""
    found = specific_span(statement)
    if found is None:
        return None
    number, match = found
    text = match.group().strip()
    # a number swaps only with numbers of its unit and its shape (a time, a version, a plain number)
    shape = ":" * (":" in text) + "." * (text.count(".") > 1)
    unit = " ".join(UNIT.findall(text)).lower() + shape if number == 2 else ""
    return ValueSpan(f"{number}:{unit}", match.start(), match.start() + len(text), text)


def claim_of(statement: str, span: ValueSpan, value: str) -> str:
    """The statement as the clause of a question, with `value` in the span's place."""
    body = statement.rstrip(".!?")
    claim = body[: span.start] + value + body[span.end :]
    return claim[0].lower() + claim[1:] if claim[:2].istitle() and not claim.split()[0].isupper() else claim


def polar_questions(chunks: Iterable[ChunkRecord], seed: int = 0) -> list[Example]:
    """For each statement with a specific value: a "Yes" question stating it and a "No" question stating another
    value of the same kind, when the knowledge base holds one."""
    found = [(c, s, span) for c in chunks for s in statements(c.text) if (span := value_span(s))]
    values: dict[str, set[str]] = {}
    for _, _, span in found:
        values.setdefault(span.kind, set()).add(span.text)
    rng = random.Random(seed)
    out = []
    for chunk, statement, span in found:
        template = rng.choice(TEMPLATES)
        out.append(polar_example(template.format(claim=claim_of(statement, span, span.text)), "yes", statement, chunk))
        others = sorted(v for v in values[span.kind] if v.casefold() != span.text.casefold())
        if others:
            wrong = rng.choice(others)
            question = rng.choice(TEMPLATES).format(claim=claim_of(statement, span, wrong))
            out.append(polar_example(question, "no", statement, chunk))
    return out


def polar_example(question: str, polarity: str, statement: str, chunk: ChunkRecord) -> Example:
    answer = f"{'Yes' if polarity == 'yes' else 'No'}, {statement[0].lower() + statement[1:]}"
    checks = dump_checks([Polarity(value=polarity, derived=True)])
    lineage = {
        "action": "generated",
        "method": "polar-question",
        "document_id": chunk.document_id,
        "document_version": chunk.document_version,
        "chunk_id": chunk.chunk_id,
        "filename": chunk.filename,
    }
    return Example(question=question, answer=answer, origin="generated", checks=checks, lineage=[lineage])
