"""The promotion gate's rule and figures, as plain functions."""

from __future__ import annotations

import pytest

from ml.promotion import SetScores, decide, figures, paired_interval


def gate(candidate: list[float], base: list[float], current: list[float] | None = None, margin: float = 0.01) -> dict:
    scores = {"candidate": candidate, "base": base, **({"current": current} if current is not None else {})}
    return figures([SetScores("v2's test split", "optimized/t-opt1/splits.json", scores)], "rag", margin)


def test_the_candidate_must_beat_both_the_current_version_and_the_base_model_by_the_margin():
    promoted = decide(gate([0.6, 0.4], base=[0.2, 0.2], current=[0.4, 0.4]), 0.05)
    assert promoted.promote and "0.5000 beats the current version (0.4000) and the base model (0.2000)" in promoted.reason
    close = decide(gate([0.6, 0.4], base=[0.2, 0.2], current=[0.48, 0.48]), 0.05)
    assert not close.promote and "does not beat the current version's 0.4800 by the margin 0.05" in close.reason
    worse_than_base = decide(gate([0.3, 0.3], base=[0.4, 0.4]), 0.0)
    assert not worse_than_base.promote and "the base model's 0.4000" in worse_than_base.reason
    assert decide(gate([0.3, 0.3], base=[0.3, 0.3]), 0.0).promote  # a margin of 0 asks only not to be worse


def test_questions_are_pooled_over_every_test_set_each_counting_once():
    sets = [SetScores("a", "a.json", {"candidate": [1.0, 1.0, 1.0], "base": [0.0, 0.0, 0.0], "current": [0.0, 0.0, 0.0]}),
            SetScores("b", "b.json", {"candidate": [0.0], "base": [0.0], "current": [1.0]})]
    shown = figures(sets, "closed_book", 0.1)
    assert shown["pooled"] == {"questions": 4, "scores": {"candidate": 0.75, "current": 0.25, "base": 0.0}}
    assert [s["scores"] for s in shown["sets"]] == [{"candidate": 1.0, "current": 0.0, "base": 0.0}, {"candidate": 0.0, "current": 1.0, "base": 0.0}]
    assert shown["differences"]["candidate - current"]["mean"] == 0.5
    low, high = shown["differences"]["candidate - current"]["interval_95"]
    assert -1.0 <= low <= 0.5 <= high <= 1.0


def test_the_paired_interval_is_narrow_for_a_constant_difference_and_wide_for_noise():
    assert paired_interval([0.5] * 20, [0.3] * 20) == (pytest.approx(0.2), pytest.approx(0.2))
    low, high = paired_interval([1.0, 0.0] * 10, [0.0, 1.0] * 10)
    assert low < 0 < high
