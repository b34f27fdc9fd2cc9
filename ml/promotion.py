"""The promotion gate's measure and rule, as plain functions.

A version's own scores come from its own task's test split, so two versions' scores cannot be compared. The gate
asks the candidate, the version the alias points at now (if any) and the base model the same questions: the
candidate's locked test split, plus the current version's locked test split when it has another one, each in the
mode the candidate serves in (with the passages that split's questions were evaluated with). Each answer is judged
right or wrong by its question's fact checks; questions are pooled over every set asked (each counts once).

The rule, on the questions that have fact checks:
- for the current version (when there is one) and the base model, compare right/wrong question by question: the exact
  McNemar test on the questions only one of the two answered right, at `significance`;
- PROMOTED only if the candidate is significantly better than each, and not worse on the blended wording score than
  either by more than `margin`;
- REFUSED if it is significantly worse than either, or worse on the blended score by more than the margin, or
  answers no more questions right than either;
- INCONCLUSIVE (not enough evidence) otherwise: better, but not significantly, on too few questions to tell.
Every question the current version (or, without one, the base model) answered right and the candidate wrong is listed.
Without any fact checks (test sets from before them), the old rule applies: the blended score must beat each
by `margin`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.status import GateStatus
from facts.stats import mcnemar_exact, wilson_interval

CANDIDATE, CURRENT, BASE = "candidate", "current", "base"
PROMOTE, REFUSE, INCONCLUSIVE = GateStatus.PROMOTED, GateStatus.REFUSED, GateStatus.INCONCLUSIVE
LABELS = {CURRENT: "the current version", BASE: "the base model"}


@dataclass(frozen=True)
class SetScores:
    """Each evaluated model's answers to one test set (the same questions, in the same order): blended score per
    question, and right/wrong by the question's fact checks (None where it has none)."""

    name: str  # e.g. "v3's test split"
    splits_key: str
    by_model: dict[str, list[float]]  # candidate | current | base -> blended scores
    right: dict[str, list[bool | None]] = field(default_factory=dict)  # candidate | current | base -> verdicts
    questions: list[dict] = field(default_factory=list)  # {example_id, question, expected} per question


@dataclass(frozen=True)
class Decision:
    outcome: GateStatus  # PROMOTED | REFUSED | INCONCLUSIVE
    reason: str

    @property
    def promote(self) -> bool:
        return self.outcome == PROMOTE


def mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 4) if values else 0.0


def paired_interval(
    first: list[float], second: list[float], resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of mean(first - second) over the same questions."""
    differences = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    if len(differences) < 2:
        value = float(differences.mean()) if len(differences) else 0.0
        return round(value, 4), round(value, 4)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return round(float(low), 4), round(float(high), 4)


def figures(sets: list[SetScores], mode: str, margin: float, significance: float = 0.05) -> dict:
    """What the gate shows side by side: per set and pooled, each model's share right (with its Wilson interval) and
    blended score; for the candidate against each other model, the paired right/wrong comparison and the blended
    difference; and the questions the candidate lost."""
    models = [m for m in (CANDIDATE, CURRENT, BASE) if all(m in s.by_model for s in sets)]
    pooled = {m: [score for s in sets for score in s.by_model[m]] for m in models}
    # the questions every model could be judged on
    judged = [
        (s, i)
        for s in sets
        for i in range(len(s.by_model[CANDIDATE]))
        if s.right and all(s.right.get(m) and s.right[m][i] is not None for m in models)
    ]
    verdicts = {m: [bool(s.right[m][i]) for s, i in judged] for m in models}
    differences, comparisons = {}, {}
    for other in (CURRENT, BASE):
        if other not in pooled:
            continue
        low, high = paired_interval(pooled[CANDIDATE], pooled[other])
        differences[f"candidate - {other}"] = {
            "mean": round(mean(pooled[CANDIDATE]) - mean(pooled[other]), 4),
            "interval_95": [low, high],
        }
        if judged:
            gained = sum(1 for c, o in zip(verdicts[CANDIDATE], verdicts[other], strict=True) if c and not o)
            lost = sum(1 for c, o in zip(verdicts[CANDIDATE], verdicts[other], strict=True) if o and not c)
            low, high = paired_interval([float(v) for v in verdicts[CANDIDATE]], [float(v) for v in verdicts[other]])
            comparisons[f"candidate - {other}"] = {
                "fact_accuracy_difference": round((sum(verdicts[CANDIDATE]) - sum(verdicts[other])) / len(judged), 4),
                "interval_95": [low, high],
                "gained": gained,
                "lost": lost,
                "p_value": round(mcnemar_exact(gained, lost), 6),
            }
    accuracy = {}
    for m in models:
        if judged:
            right = sum(verdicts[m])
            low, high = wilson_interval(right, len(judged))
            accuracy[m] = {
                "fact_accuracy": round(right / len(judged), 4),
                "right": right,
                "interval_95": [round(low, 4), round(high, 4)],
            }
    reference = CURRENT if CURRENT in models else BASE
    lost_questions = [
        {**s.questions[i], "set": s.name}
        for (s, i), c, o in zip(judged, verdicts.get(CANDIDATE, []), verdicts.get(reference, []), strict=False)
        if o and not c and i < len(s.questions)
    ]
    return {
        "mode": mode,
        "margin": margin,
        "significance": significance,
        "sets": [
            {
                "name": s.name,
                "splits_key": s.splits_key,
                "questions": len(next(iter(s.by_model.values()))),
                "scores": {m: mean(s.by_model[m]) for m in models},
                "fact_accuracy": {m: _share(s.right.get(m)) for m in models} if s.right else {},
            }
            for s in sets
        ],
        "pooled": {
            "questions": len(pooled[CANDIDATE]),
            "judged": len(judged),
            "scores": {m: mean(pooled[m]) for m in models},
            "fact_accuracy": accuracy,
        },
        "differences": differences,  # blended score
        "comparisons": comparisons,  # right/wrong, paired
        "regressions": {"against": reference, "questions": lost_questions},
    }


def _share(verdicts: list[bool | None] | None) -> float | None:
    judged = [v for v in verdicts or [] if v is not None]
    return round(sum(judged) / len(judged), 4) if judged else None


def decide(figures_: dict, margin: float, significance: float | None = None) -> Decision:
    """PROMOTE, REFUSE or INCONCLUSIVE by the paired right/wrong comparisons (see the module's rule)."""
    pooled = figures_["pooled"]
    if not pooled.get("judged"):
        return _decide_by_blended_score(figures_, margin)
    significance = significance if significance is not None else figures_.get("significance", 0.05)
    scores, accuracy, questions = pooled["scores"], pooled["fact_accuracy"], pooled["judged"]
    candidate = accuracy[CANDIDATE]["fact_accuracy"]
    lost = len(figures_["regressions"]["questions"])
    refusals, unproven, beaten = [], [], []
    for other in (CURRENT, BASE):
        if other not in accuracy:
            continue
        label, comparison = LABELS[other], figures_["comparisons"][f"candidate - {other}"]
        theirs, p = accuracy[other]["fact_accuracy"], comparison["p_value"]
        low, high = comparison["interval_95"]
        versus = (
            f"{candidate:.3f} vs {label}'s {theirs:.3f} right ({comparison['gained']} gained, {comparison['lost']} "
            f"lost, "
            f"McNemar p = {p:.3g}, difference 95% interval [{low:+.3f}, {high:+.3f}])"
        )
        if scores[CANDIDATE] < scores[other] - margin:
            refusals.append(
                f"its blended score {scores[CANDIDATE]:.4f} is worse than {label}'s {scores[other]:.4f} by more than "
                f"the margin {margin}"
            )
        elif comparison["gained"] <= comparison["lost"]:
            refusals.append(f"it answers no more questions right: {versus}")
        elif p >= significance:
            unproven.append(versus)
        else:
            beaten.append(versus)
    against = (
        f"; {lost} question{'s' if lost != 1 else ''} {LABELS[figures_['regressions']['against']]} answered right "
        f"turned wrong"
        if lost
        else ""
    )
    if refusals:
        return Decision(REFUSE, f"refused on {questions} judged questions: " + "; ".join(refusals) + against)
    if unproven:
        return Decision(
            INCONCLUSIVE,
            f"not enough evidence on {questions} judged questions (significance {significance}): "
            + "; ".join(unproven)
            + against,
        )
    return Decision(PROMOTE, f"promoted on {questions} judged questions: " + "; ".join(beaten) + against)


def _decide_by_blended_score(figures_: dict, margin: float) -> Decision:
    """Test sets without fact checks: the candidate's pooled blended score must beat each other model's by `margin`."""
    scores = figures_["pooled"]["scores"]
    candidate = scores[CANDIDATE]
    shortfalls = [
        f"{candidate:.4f} does not beat {label}'s {scores[other]:.4f} by the margin {margin}"
        for other, label in LABELS.items()
        if other in scores and candidate - scores[other] < margin
    ]
    questions = figures_["pooled"]["questions"]
    if shortfalls:
        return Decision(
            REFUSE, f"refused on {questions} test questions (no fact checks: blended score): " + "; ".join(shortfalls)
        )
    beaten = " and ".join(f"{label} ({scores[other]:.4f})" for other, label in LABELS.items() if other in scores)
    return Decision(
        PROMOTE,
        f"promoted on {questions} test questions (no fact checks: blended score): {candidate:.4f} beats {beaten} "
        f"by at least {margin}",
    )
