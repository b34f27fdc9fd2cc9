"""The promotion gate's measure and rule, as plain functions.

A version's own scores come from its own task's test split, so two versions' scores cannot be compared. The gate
asks the candidate, the version the alias points at now (if any) and the base model the same questions: the
candidate's locked test split, plus the current version's locked test split when it has another one, each in the
mode the candidate serves in (with the passages that split's questions were evaluated with). Scores are pooled
over every question asked (each question counts once, whichever split it came from).

The rule: promote only if the candidate's pooled score beats the current version's and the base model's by at
least `margin` each. A paired bootstrap interval of candidate - current (and candidate - base) is reported beside
the rule for the reader; the rule itself is the margin, as configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANDIDATE, CURRENT, BASE = "candidate", "current", "base"


@dataclass(frozen=True)
class SetScores:
    """Per-question overall scores of each evaluated model on one test set (the same questions, in the same order)."""

    name: str  # e.g. "v3's test split"
    splits_key: str
    by_model: dict[str, list[float]]  # candidate | current | base -> scores


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 4) if values else 0.0


def paired_interval(first: list[float], second: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of mean(first - second) over the same questions."""
    differences = np.asarray(first) - np.asarray(second)
    if len(differences) < 2:
        value = float(differences.mean()) if len(differences) else 0.0
        return round(value, 4), round(value, 4)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return round(float(low), 4), round(float(high), 4)


def figures(sets: list[SetScores], mode: str, margin: float) -> dict:
    """What the gate shows side by side: each set's mean per model, the pooled means, and the differences."""
    models = [m for m in (CANDIDATE, CURRENT, BASE) if all(m in s.by_model for s in sets)]
    pooled = {m: [score for s in sets for score in s.by_model[m]] for m in models}
    differences = {}
    for other in (CURRENT, BASE):
        if other in pooled:
            low, high = paired_interval(pooled[CANDIDATE], pooled[other])
            differences[f"candidate - {other}"] = {"mean": round(mean(pooled[CANDIDATE]) - mean(pooled[other]), 4), "interval_95": [low, high]}
    return {
        "mode": mode,
        "margin": margin,
        "sets": [{"name": s.name, "splits_key": s.splits_key, "questions": len(next(iter(s.by_model.values()))),
                  "scores": {m: mean(s.by_model[m]) for m in models}} for s in sets],
        "pooled": {"questions": len(pooled[CANDIDATE]), "scores": {m: mean(pooled[m]) for m in models}},
        "differences": differences,
    }


def decide(figures_: dict, margin: float) -> Decision:
    """Promote only if the candidate beats the current version (when there is one) and the base model by `margin` each."""
    scores = figures_["pooled"]["scores"]
    candidate = scores[CANDIDATE]
    shortfalls = []
    for other, label in ((CURRENT, "the current version"), (BASE, "the base model")):
        if other in scores and candidate - scores[other] < margin:
            shortfalls.append(f"{candidate:.4f} does not beat {label}'s {scores[other]:.4f} by the margin {margin}")
    questions = figures_["pooled"]["questions"]
    if shortfalls:
        return Decision(False, f"refused on {questions} test questions: " + "; ".join(shortfalls))
    beaten = " and ".join(f"{label} ({scores[other]:.4f})" for other, label in ((CURRENT, "the current version"), (BASE, "the base model"))
                          if other in scores)
    return Decision(True, f"promoted on {questions} test questions: {candidate:.4f} beats {beaten} by at least {margin}")
