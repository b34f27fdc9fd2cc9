"""The blocking suites in the shadow of a release step: the step's real prompts that ask what a blocking case asks
(MiniLM cosine of the prompt to the case's question at least `SAME_QUESTION`) are asked again, out of the clients'
sight, of both versions, each judged by the matched case's assertions with the real prompt in place of the case's own
question. The two versions' verdicts are compared prompt by prompt (`suites.compare`): a blocking case must never
regress, so the candidate fails when more prompts broke (right for the current version, wrong for the candidate) than
the release allows (`max_shadow_broken`, 0 by default).

The suites ran once against the candidate before any traffic, on their own wording; the shadow asks them as users do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facts.judge import normalize
from suites.cases import Case, Message
from suites.compare import BROKEN, compare_runs

SAME_QUESTION = 0.9  # cosine similarity of a real prompt to a known question, for the known one's assertions to apply
NAMED = 5  # broken prompts named in a decision's reason
Embedder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class ShadowCase:
    """A real prompt asked as the blocking case it matched."""

    id: str  # "<case id>#<n>": the n-th real prompt matched to that case
    prompt: str
    case: Case  # the matched case, asking `prompt` in place of its own question
    case_id: str
    similarity: float


def asked_as(case: Case, prompt: str) -> Case:
    """`case` with `prompt` as its question (a conversation keeps its earlier turns)."""
    if case.prompt is not None:
        return case.model_copy(update={"prompt": prompt})
    earlier = list(case.messages or [])[:-1]
    return case.model_copy(update={"messages": [*earlier, Message(role="user", content=prompt)]})


def shadow_cases(
    prompts: list[str], cases: list[Case], embed: Embedder, limit: int, similarity: float = SAME_QUESTION
) -> list[ShadowCase]:
    """Up to `limit` distinct prompts (in their order) that match a case, each with its nearest case."""
    first: dict[str, str] = {}  # the same prompt, in another case or punctuation, is asked once
    for prompt in prompts:
        if prompt.strip():
            first.setdefault(normalize(prompt).rstrip("?.! "), prompt)
    distinct = list(first.values())
    if not distinct or not cases or limit <= 0:
        return []
    scores = embed(distinct) @ embed([c.question for c in cases]).T
    found: list[ShadowCase] = []
    per_case: dict[str, int] = {}
    for prompt, row in zip(distinct, scores, strict=True):
        nearest = int(np.argmax(row))
        if row[nearest] < similarity:
            continue
        case = cases[nearest]
        per_case[case.id] = per_case.get(case.id, 0) + 1
        found.append(
            ShadowCase(f"{case.id}#{per_case[case.id]}", prompt, asked_as(case, prompt), case.id, float(row[nearest]))
        )
        if len(found) == limit:
            break
    return found


def shadow_verdict(
    asked: list[ShadowCase], current: dict[str, bool], candidate: dict[str, bool], max_broken: int
) -> tuple[bool, str, dict]:
    """(passed, reason, figures) from each version's verdict per shadow case id."""
    comparison = compare_runs(current, candidate)
    broken = [c for c in asked if comparison.cases.get(c.id) == BROKEN]
    figures = {
        "asked": len(asked),
        "current_passed": sum(current.values()),
        "candidate_passed": sum(candidate.values()),
        **comparison.counts,
        "p_value": comparison.p_value,
        "broken_cases": [{"id": c.id, "case_id": c.case_id, "prompt": c.prompt} for c in broken],
    }
    if not asked:
        return True, "no real prompt of the step matched a blocking case", figures
    summary = (
        f"{len(asked)} real prompts asked as blocking cases in the shadow: the current version passed "
        f"{figures['current_passed']}, the candidate {figures['candidate_passed']} ({len(broken)} broken, "
        f"{comparison.counts['fixed']} fixed)"
    )
    if len(broken) > max_broken:
        named = "; ".join(f"{c.case_id}: {c.prompt!r}" for c in broken[:NAMED])
        return False, f"{summary}, more than {max_broken} broken: {named}", figures
    return True, summary, figures
