"""The statistics of right answers: the share right with its Wilson interval, and the exact McNemar test of two models
that answered the same questions (scipy's exact binomial test on the questions where they disagree)."""

from __future__ import annotations

from scipy.stats import binomtest


def wilson_interval(right: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of `right / total` ((0, 1) when nothing was asked)."""
    if total == 0:
        return 0.0, 1.0
    interval = binomtest(right, total).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided p-value that two models are equally often right, from the questions only one got right: `gained`
    that the first got right and the second wrong, `lost` the other way round."""
    if gained + lost == 0:
        return 1.0
    return float(binomtest(gained, gained + lost, 0.5).pvalue)
