"""Which iteration of a loop a task keeps: the one its feedback split judges best, never the test split.

A continuous task's last iteration is not always its best: a round can lose questions it had right. The task keeps
(registers, reports as final, puts before the gate) the iteration with the most right answers on the feedback split;
among iterations tied there, the one with the higher blended score on that split (the secondary figure everywhere);
among iterations tied on both, the earlier one (it trained on less). Without fact checks the blended score alone
decides. The test split is only ever reported: it plays no part here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class IterationFigures(Protocol):
    """What the choice reads of an iteration (a `schemas.workflow_io.IterationRecord` has it)."""

    @property
    def iteration(self) -> int: ...

    @property
    def feedback_accuracy(self) -> float | None: ...

    @property
    def feedback_score(self) -> float: ...


@dataclass(frozen=True)
class IterationChoice:
    iteration: int
    because: str  # one sentence, for the report


def choose_iteration(iterations: Sequence[IterationFigures]) -> IterationChoice:
    """The iteration to keep among `iterations` (at least one), with why."""
    if not iterations:
        raise ValueError("no iteration to choose from")
    by_accuracy = all(it.feedback_accuracy is not None for it in iterations)

    def key(it: IterationFigures) -> tuple[float, float, int]:
        accuracy = it.feedback_accuracy if by_accuracy and it.feedback_accuracy is not None else 0.0
        return (accuracy, it.feedback_score, -it.iteration)

    best = max(iterations, key=key)
    if len(iterations) == 1:
        return IterationChoice(best.iteration, "the task's only iteration")
    others = [it for it in iterations if it is not best]
    if by_accuracy:
        tied = [it.iteration for it in others if it.feedback_accuracy == best.feedback_accuracy]
        because = f"the most feedback answers right ({best.feedback_accuracy:.3f})"
        if tied:
            because += (
                f"; tied with iteration {_listed(tied)} there, it has the higher blended feedback score "
                f"({best.feedback_score:.4f})"
                if all(it.feedback_score != best.feedback_score for it in others if it.iteration in tied)
                else f"; tied with iteration {_listed(tied)} on both feedback figures, it is the earlier"
            )
    else:
        because = f"the highest blended feedback score ({best.feedback_score:.4f}; no fact checks)"
    return IterationChoice(best.iteration, because)


def _listed(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)
