"""The promotion gate's rule and figures, as plain functions: right/wrong compared question by question (exact McNemar),
the blended score as a guard, not enough evidence as an outcome of its own, and the old blended rule without checks."""

from __future__ import annotations

import pytest

from core.status import GateStatus
from ml.promotion import SetScores, decide, figures, paired_interval


def gate(candidate: list[float], base: list[float], current: list[float] | None = None, margin: float = 0.01) -> dict:
    scores = {"candidate": candidate, "base": base, **({"current": current} if current is not None else {})}
    return figures([SetScores("v2's test split", "optimized/t-opt1/splits.json", scores)], "rag", margin)


def judged(
    candidate: list[bool],
    base: list[bool],
    current: list[bool] | None = None,
    blended: dict | None = None,
    margin: float = 0.05,
) -> dict:
    right: dict[str, list[bool | None]] = {
        "candidate": list(candidate),
        "base": list(base),
        **({"current": list(current)} if current is not None else {}),
    }
    scores = blended or {m: [0.5] * len(v) for m, v in right.items()}
    questions = [
        {"example_id": f"q{i}", "question": f"question {i}?", "expected": "No."} for i in range(len(candidate))
    ]
    return figures([SetScores("v2's test split", "s.json", scores, right, questions)], "rag", margin, significance=0.05)


def test_a_candidate_significantly_more_often_right_than_both_is_promoted():
    # 20 questions: the candidate fixes 10 of the current version's wrong answers and loses 1
    current = [True] * 6 + [False] * 14
    candidate = [True] * 5 + [False] + [True] * 10 + [False] * 4
    shown = judged(candidate, base=[False] * 20, current=current)
    assert shown["pooled"]["fact_accuracy"]["candidate"] == {
        "fact_accuracy": 0.75,
        "right": 15,
        "interval_95": [0.5313, 0.8881],
    }
    assert shown["comparisons"]["candidate - current"] | {"interval_95": None} == {
        "fact_accuracy_difference": 0.45,
        "interval_95": None,
        "gained": 10,
        "lost": 1,
        "p_value": 0.011719,
    }
    decision = decide(shown, 0.05)
    assert decision.outcome == GateStatus.PROMOTED and decision.promote
    assert "0.750 vs the current version's 0.300 right (10 gained, 1 lost, McNemar p = 0.0117" in decision.reason
    assert "1 question the current version answered right turned wrong" in decision.reason
    assert shown["regressions"] == {
        "against": "current",
        "questions": [{"example_id": "q5", "question": "question 5?", "expected": "No.", "set": "v2's test split"}],
    }


def test_better_on_too_few_questions_is_not_enough_evidence_and_nothing_is_promoted():
    # the case: 7 questions; the candidate gets 3 more right than the base model, which is not significant
    decision = decide(judged([True, True, True, False, False, False, False], base=[False] * 7), 0.05)
    assert decision.outcome == GateStatus.INCONCLUSIVE and not decision.promote
    assert decision.reason.startswith(
        "not enough evidence on 7 judged questions (significance 0.05): 0.429 vs the base model's 0.000 right "
        "(3 gained, 0 lost, McNemar p = 0.25"
    )


def test_a_candidate_worded_like_the_references_but_wrong_is_refused_with_the_figures():
    # close to the references in wording (a better blended score), but it turned right answers wrong
    candidate, base = [False] * 12 + [True] * 8, [True] * 12 + [False] * 8
    shown = judged(candidate, base=base, blended={"candidate": [0.8] * 20, "base": [0.3] * 20})
    decision = decide(shown, 0.05)
    assert decision.outcome == GateStatus.REFUSED
    assert (
        "it answers no more questions right: 0.400 vs the base model's 0.600 right (8 gained, 12 lost"
        in decision.reason
    )
    assert len(shown["regressions"]["questions"]) == 12 and shown["regressions"]["against"] == "base"


def test_a_candidate_much_worse_in_wording_is_refused_whatever_its_facts():
    shown = judged([True] * 20, base=[False] * 20, blended={"candidate": [0.1] * 20, "base": [0.5] * 20})
    decision = decide(shown, 0.05)
    assert (
        decision.outcome == GateStatus.REFUSED
        and "blended score 0.1000 is worse than the base model's 0.5000 by more than the margin" in decision.reason
    )


def test_questions_without_checks_are_left_out_of_the_paired_comparison():
    right = {"candidate": [True, None, True], "base": [False, None, False]}
    shown = figures(
        [SetScores("s", "s.json", {"candidate": [1, 1, 1], "base": [0, 0, 0]}, right, [{}] * 3)], "rag", 0.0
    )
    assert shown["pooled"]["judged"] == 2 and shown["pooled"]["questions"] == 3
    assert shown["sets"][0]["fact_accuracy"] == {"candidate": 1.0, "base": 0.0}


# ---------------------------------------------------------------- test sets without fact checks: the blended rule


def test_without_checks_the_candidate_must_beat_both_the_current_version_and_the_base_model_by_the_margin():
    promoted = decide(gate([0.6, 0.4], base=[0.2, 0.2], current=[0.4, 0.4]), 0.05)
    assert (
        promoted.promote and "0.5000 beats the current version (0.4000) and the base model (0.2000)" in promoted.reason
    )
    close = decide(gate([0.6, 0.4], base=[0.2, 0.2], current=[0.48, 0.48]), 0.05)
    assert not close.promote and "does not beat the current version's 0.4800 by the margin 0.05" in close.reason
    worse_than_base = decide(gate([0.3, 0.3], base=[0.4, 0.4]), 0.0)
    assert not worse_than_base.promote and "the base model's 0.4000" in worse_than_base.reason
    assert decide(gate([0.3, 0.3], base=[0.3, 0.3]), 0.0).promote  # a margin of 0 asks only not to be worse


def test_questions_are_pooled_over_every_test_set_each_counting_once():
    sets = [
        SetScores("a", "a.json", {"candidate": [1.0, 1.0, 1.0], "base": [0.0, 0.0, 0.0], "current": [0.0, 0.0, 0.0]}),
        SetScores("b", "b.json", {"candidate": [0.0], "base": [0.0], "current": [1.0]}),
    ]
    shown = figures(sets, "closed_book", 0.1)
    assert shown["pooled"] | {"fact_accuracy": None} == {
        "questions": 4,
        "judged": 0,
        "scores": {"candidate": 0.75, "current": 0.25, "base": 0.0},
        "fact_accuracy": None,
    }
    assert [s["scores"] for s in shown["sets"]] == [
        {"candidate": 1.0, "current": 0.0, "base": 0.0},
        {"candidate": 0.0, "current": 1.0, "base": 0.0},
    ]
    assert shown["differences"]["candidate - current"]["mean"] == 0.5
    low, high = shown["differences"]["candidate - current"]["interval_95"]
    assert -1.0 <= low <= 0.5 <= high <= 1.0


def test_the_paired_interval_is_narrow_for_a_constant_difference_and_wide_for_noise():
    assert paired_interval([0.5] * 20, [0.3] * 20) == (pytest.approx(0.2), pytest.approx(0.2))
    low, high = paired_interval([1.0, 0.0] * 10, [0.0, 1.0] * 10)
    assert low < 0 < high
