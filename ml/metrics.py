"""Answer quality metrics: exact match, token F1, BLEU (sacrebleu), ROUGE-L (rouge-score), overall score and grade."""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

import sacrebleu
from rouge_score import rouge_scorer

METRIC_NAMES = ("exact_match", "token_f1", "bleu", "rouge_l")
_ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@dataclass(frozen=True)
class ScoreWeights:
    exact_match: float = 0.1
    token_f1: float = 0.4
    bleu: float = 0.2
    rouge_l: float = 0.3


@dataclass(frozen=True)
class GradeThresholds:
    excellent: float = 0.8
    good: float = 0.6
    acceptable: float = 0.4


def normalize_answer(text: str) -> str:
    """SQuAD-style normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def bleu(prediction: str, reference: str) -> float:
    """Sentence BLEU in [0, 1] (sacrebleu's 0-100 divided by 100, with exponential smoothing)."""
    return min(1.0, sacrebleu.sentence_bleu(prediction, [reference]).score / 100.0)


def rouge_l(prediction: str, reference: str) -> float:
    return _ROUGE.score(reference, prediction)["rougeL"].fmeasure


def score_example(prediction: str, reference: str) -> dict[str, float]:
    return {
        "exact_match": exact_match(prediction, reference),
        "token_f1": token_f1(prediction, reference),
        "bleu": bleu(prediction, reference),
        "rouge_l": rouge_l(prediction, reference),
    }


def overall(scores: dict[str, float], weights: ScoreWeights) -> float:
    """Weighted mean of the metrics, in [0, 1]."""
    pairs = [(scores[name], getattr(weights, name)) for name in METRIC_NAMES]
    total = sum(w for _, w in pairs)
    return sum(s * w for s, w in pairs) / total


def corpus_scores(per_example: list[dict[str, float]], weights: ScoreWeights) -> dict[str, float]:
    """Mean of each metric over examples, plus `overall`."""
    if not per_example:
        return {**{name: 0.0 for name in METRIC_NAMES}, "overall": 0.0}
    means = {name: sum(s[name] for s in per_example) / len(per_example) for name in METRIC_NAMES}
    return {**{k: round(v, 4) for k, v in means.items()}, "overall": round(overall(means, weights), 4)}


def grade(score: float, thresholds: GradeThresholds) -> str:
    if score >= thresholds.excellent:
        return "EXCELLENT"
    if score >= thresholds.good:
        return "GOOD"
    if score >= thresholds.acceptable:
        return "ACCEPTABLE"
    return "POOR"
