"""RAFT's quote-then-answer format: the model first quotes the statement of its passages that holds the fact, then
answers; the quote stays with the sources and only the answer is shown and judged.

A training example asked with passages gets, as its target, "Quote: <statement>" and "Answer: <its answer>" on two
lines, the statement being the one of its passages that holds most of the answer's content words. A small model that
must write "Yes" or "No" first commits to it before it has read anything; quoting first puts the fact in front of
the verdict ("Quote: Port changes require a service restart." → "Answer: No, …"). Where no passage holds enough of
the answer (RAFT's distractor-only prompts), the target is the answer alone, as today's.
"""

from __future__ import annotations

import dataclasses

from knowledge.grounding import support
from ml.examples import Example
from ml.generation import statements

QUOTE = "Quote: "
ANSWER = "Answer: "
MIN_SUPPORT = 0.5  # the share of the answer's content words the quoted statement must hold


def quote_for(answer: str, passages: list[str]) -> str | None:
    """The statement of `passages` that holds most of `answer`'s content words, or None below `MIN_SUPPORT`."""
    candidates = [s for passage in passages for s in statements(passage)]
    if not candidates:
        return None
    best = max(candidates, key=lambda s: support(answer, s))
    return best if support(answer, best) >= MIN_SUPPORT else None


def quoted(examples: list[Example]) -> list[Example]:
    """Each example asked with passages, its target quoting its statement before the answer (where one holds it)."""
    out = []
    for example in examples:
        quote = quote_for(example.answer, example.context) if example.context else None
        out.append(
            dataclasses.replace(example, answer=f"{QUOTE}{quote}\n{ANSWER}{example.answer}") if quote else example
        )
    return out


def shown_answer(text: str) -> str:
    """What the user sees and the checks judge: the text after the last "Answer:" marker; a reply that did not quote
    is all answer, and one that quoted but never reached its answer has none."""
    at = text.rfind(ANSWER.strip())
    if at != -1:
        return text[at + len(ANSWER.strip()) :].strip()
    return "" if text.lstrip().startswith(QUOTE.strip()) else text.strip()
