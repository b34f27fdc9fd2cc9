"""Answer quality metrics: known values, ranges, weighting and grades."""

from __future__ import annotations

import pytest

from ml.metrics import (
    METRIC_NAMES,
    GradeThresholds,
    ScoreWeights,
    bleu,
    corpus_scores,
    exact_match,
    grade,
    normalize_answer,
    overall,
    rouge_l,
    score_example,
    token_f1,
)

EPS = 1e-9


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Cat, sat!", "cat sat"),
        ("An apple a day", "apple day"),
        ("  Theater   is   THE  answer. ", "theater is answer"),  # "the" only as a whole word
        ("$8 per user/month", "8 per usermonth"),
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The port is 7400.", "the port is 7400", 1.0),
        ("Port 7400", "The port is 7400", 0.0),
        ("", "", 1.0),
        ("a", "the", 1.0),  # both normalize to nothing
    ],
)
def test_exact_match(prediction, reference, expected):
    assert exact_match(prediction, reference) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The cat sat.", "a cat sat on the mat", 2 * 1.0 * 0.5 / 1.5),  # P=2/2, R=2/4
        ("cat sat on mat", "cat sat on mat", 1.0),
        ("dog", "cat sat", 0.0),
        ("", "cat", 0.0),
        ("cat", "", 0.0),
        ("the", "an", 1.0),
        ("cat cat cat", "cat", 2 * (1 / 3) * 1.0 / (1 / 3 + 1.0)),  # repeated tokens count once
        ("port 7400 tcp", "tcp port 7400 by default", 2 * 1.0 * 0.6 / 1.6),
    ],
)
def test_token_f1(prediction, reference, expected):
    assert token_f1(prediction, reference) == pytest.approx(expected)


def test_token_f1_is_symmetric():
    assert token_f1("a b c d", "b c e") == pytest.approx(token_f1("b c e", "a b c d"))


@pytest.mark.parametrize("sentence", ["hello world", "The agent listens on TCP port 7400 by default."])
def test_bleu_identical_is_one(sentence):
    assert bleu(sentence, sentence) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("The agent listens on port 7400.", "The agent listens on TCP port 7400 by default."),
        ("completely unrelated words", "The agent listens on TCP port 7400 by default."),
        ("", "The agent listens on port 7400."),
        ("port port port port port", "port"),
    ],
)
def test_bleu_in_unit_interval(prediction, reference):
    assert -EPS <= bleu(prediction, reference) <= 1 + EPS


def test_bleu_orders_by_overlap():
    ref = "The agent listens on TCP port 7400 by default."
    close = bleu("The agent listens on TCP port 7400.", ref)
    far = bleu("The agent uses port 7400.", ref)
    assert 0 < far < close < 1
    assert bleu("completely unrelated words", ref) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("the cat", "the cat sat on the mat", 2 * 1.0 * (2 / 6) / (1 + 2 / 6)),  # LCS 2: P=2/2, R=2/6
        ("cats running", "cat runs", 1.0),  # Porter stemming
        ("mat the on sat cat the", "the cat sat on the mat", 0.5),  # LCS "the on the": P = R = 3/6
        ("", "the cat", 0.0),
        ("dog", "cat", 0.0),
    ],
)
def test_rouge_l(prediction, reference, expected):
    assert rouge_l(prediction, reference) == pytest.approx(expected)


def test_rouge_l_order_of_arguments():
    # precision is over the prediction, recall over the reference: a short correct prefix has high precision
    from ml.metrics import _ROUGE

    detail = _ROUGE.score("the cat sat on the mat", "the cat")["rougeL"]
    assert detail.precision == pytest.approx(1.0) and detail.recall == pytest.approx(2 / 6)
    assert rouge_l("the cat", "the cat sat on the mat") == pytest.approx(detail.fmeasure)


def test_score_example_has_every_metric():
    scores = score_example("The port is 7400.", "The port is 7400.")
    assert set(scores) == set(METRIC_NAMES)
    assert scores["exact_match"] == 1.0 and scores["token_f1"] == 1.0 and scores["rouge_l"] == pytest.approx(1.0)
    assert scores["bleu"] == pytest.approx(1.0)


def test_overall_weights():
    scores = {"exact_match": 0.0, "token_f1": 0.5, "bleu": 0.25, "rouge_l": 1.0}
    assert overall(scores, ScoreWeights()) == pytest.approx((0.1 * 0 + 0.4 * 0.5 + 0.2 * 0.25 + 0.3 * 1.0) / 1.0)
    assert overall(scores, ScoreWeights(exact_match=0, token_f1=1, bleu=0, rouge_l=0)) == pytest.approx(0.5)
    # weights are normalized by their sum
    assert overall(scores, ScoreWeights(2, 8, 4, 6)) == pytest.approx(overall(scores, ScoreWeights()))
    assert overall(scores, ScoreWeights(1, 1, 1, 1)) == pytest.approx(1.75 / 4)


def test_corpus_scores_means_and_overall():
    per = [
        {"exact_match": 1.0, "token_f1": 1.0, "bleu": 1.0, "rouge_l": 1.0},
        {"exact_match": 0.0, "token_f1": 0.5, "bleu": 0.2, "rouge_l": 0.4},
    ]
    result = corpus_scores(per, ScoreWeights())
    assert result == {
        "exact_match": 0.5,
        "token_f1": 0.75,
        "bleu": 0.6,
        "rouge_l": 0.7,
        "overall": round(0.1 * 0.5 + 0.4 * 0.75 + 0.2 * 0.6 + 0.3 * 0.7, 4),
    }


def test_corpus_scores_of_empty_list():
    assert corpus_scores([], ScoreWeights()) == {
        "exact_match": 0.0,
        "token_f1": 0.0,
        "bleu": 0.0,
        "rouge_l": 0.0,
        "overall": 0.0,
    }


def test_corpus_scores_rounds_to_four_digits():
    per = [{"exact_match": 1 / 3, "token_f1": 2 / 3, "bleu": 0.123456, "rouge_l": 0.0}]
    result = corpus_scores(per, ScoreWeights())
    assert result["exact_match"] == 0.3333 and result["token_f1"] == 0.6667 and result["bleu"] == 0.1235


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (1.0, "EXCELLENT"),
        (0.8, "EXCELLENT"),
        (0.7999, "GOOD"),
        (0.6, "GOOD"),
        (0.5999, "ACCEPTABLE"),
        (0.4, "ACCEPTABLE"),
        (0.3999, "POOR"),
        (0.0, "POOR"),
    ],
)
def test_grade_boundaries(score, expected):
    assert grade(score, GradeThresholds()) == expected


def test_grade_custom_thresholds():
    thresholds = GradeThresholds(excellent=0.9, good=0.9, acceptable=0.1)
    assert grade(0.9, thresholds) == "EXCELLENT"
    assert grade(0.89, thresholds) == "ACCEPTABLE"
    assert grade(0.05, thresholds) == "POOR"
