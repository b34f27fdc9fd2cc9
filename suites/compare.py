"""Two runs of a suite compared case by case, paired: each case both runs answered is fixed (wrong, then right),
broken (right, then wrong), still wrong or still right; the exact McNemar test on fixed against broken says whether
the second run is right more or less often than chance would explain."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from facts.stats import mcnemar_exact

FIXED, BROKEN, STILL_WRONG, STILL_RIGHT = "fixed", "broken", "still_wrong", "still_right"


@dataclass(frozen=True)
class Comparison:
    cases: dict[str, str]  # case id -> fixed | broken | still_wrong | still_right
    counts: dict[str, int]
    p_value: float  # exact McNemar on fixed vs broken
    only_before: list[str] = field(default_factory=list)  # cases the second run did not answer
    only_after: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def outcome(before: bool, after: bool) -> str:
    if before:
        return STILL_RIGHT if after else BROKEN
    return FIXED if after else STILL_WRONG


def compare_runs(before: dict[str, bool], after: dict[str, bool]) -> Comparison:
    """`before` and `after` map each case id to whether it passed; cases in both are paired, in `before`'s order."""
    cases = {case: outcome(passed, after[case]) for case, passed in before.items() if case in after}
    counts = {kind: 0 for kind in (FIXED, BROKEN, STILL_WRONG, STILL_RIGHT)}
    for kind in cases.values():
        counts[kind] += 1
    return Comparison(
        cases,
        counts,
        mcnemar_exact(counts[FIXED], counts[BROKEN]),
        [case for case in before if case not in after],
        [case for case in after if case not in before],
    )
