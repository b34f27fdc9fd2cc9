"""The iteration a task keeps: best on the feedback split, ties to the blended score, then to the earlier one."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.iteration_choice import choose_iteration


@dataclass(frozen=True)
class Figures:
    iteration: int
    feedback_accuracy: float | None
    feedback_score: float
    test_accuracy: float = 0.0  # never read: the test split plays no part


def test_the_most_feedback_answers_right_wins_whatever_the_test_split_says():
    choice = choose_iteration(
        [Figures(1, 0.5, 0.30, test_accuracy=0.9), Figures(2, 0.7, 0.25, test_accuracy=0.1), Figures(3, 0.6, 0.4)]
    )
    assert choice.iteration == 2
    assert choice.because == "the most feedback answers right (0.700)"


def test_a_tie_on_right_answers_goes_to_the_higher_blended_feedback_score():
    choice = choose_iteration([Figures(1, 0.745, 0.3272), Figures(2, 0.745, 0.3301)])
    assert choice.iteration == 2
    assert choice.because == (
        "the most feedback answers right (0.745); tied with iteration 1 there, it has the higher blended feedback "
        "score (0.3301)"
    )


def test_a_tie_on_both_figures_goes_to_the_earlier_iteration():
    choice = choose_iteration([Figures(1, 0.5, 0.3), Figures(2, 0.5, 0.3), Figures(3, 0.4, 0.9)])
    assert choice.iteration == 1
    assert "tied with iteration 2 on both feedback figures, it is the earlier" in choice.because


def test_without_fact_checks_the_blended_feedback_score_decides():
    choice = choose_iteration([Figures(1, None, 0.31), Figures(2, None, 0.29)])
    assert (choice.iteration, choice.because) == (1, "the highest blended feedback score (0.3100; no fact checks)")


def test_one_iteration_is_kept_as_it_is():
    assert choose_iteration([Figures(1, 0.1, 0.1)]).because == "the task's only iteration"


def test_no_iteration_is_an_error():
    with pytest.raises(ValueError, match="no iteration"):
        choose_iteration([])
