"""A release's rules, as plain functions: its plan (steps and thresholds), the sticky traffic split, and the analysis
of a step's two arms (`services/releases.py` keeps the releases, `workflows/release.py` drives them).

- **The split**: a conversation (or a request) falls at sha256(release id, its key) mod 100 in [0, 100); it goes to
  the candidate below the step's weight. The same for the whole release, so a conversation stays on one version and a
  larger weight only adds conversations.
- **The analysis**: per arm, requests, error rate, p95 latency of the completed answers and the rate of answers rated
  down; enough data once every arm with traffic has its minimum number of requests; the candidate fails on any
  threshold.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

CURRENT, CANDIDATE = "current", "candidate"
COMPLETED, FAILED, DOWN = "completed", "failed", "down"  # a history entry's status and rating (services.qa)


class PlanInvalid(ValueError):
    """Steps or thresholds a release cannot run with (the message names each)."""


@dataclass(frozen=True)
class Thresholds:
    """A release's plan besides its steps: each step's waits, and what the candidate may not exceed."""

    bake_seconds: float = 300.0  # every step runs at least this long
    min_requests: int = 50  # per arm that gets traffic, before a step is analysed
    max_wait_seconds: float = 3600.0  # a step without enough requests after this pauses the release
    poll_seconds: float = 15.0  # how often a baked step counts its requests again
    max_error_rate: float = 0.05  # above the current version's error rate
    max_down_rate: float = 0.10  # rate of answers rated down, above the current version's
    max_latency_ratio: float = 1.5  # the candidate's p95 latency over the current's ...
    latency_slack_ms: float = 100.0  # ... plus this, so that a few milliseconds on a small p95 do not fail it
    # answers to questions the versions know the facts of (their splits' rows, the blocking suites' cases), judged by
    # those checks: the candidate's share right may be this much below the current's, once each arm has this many
    max_fact_drop: float = 0.2
    min_fact_checked: int = 5
    # the blocking suites in the shadow (`suites.shadow`): up to this many of a step's real prompts that ask what a
    # blocking case asks, asked of both versions; the candidate may break at most `max_shadow_broken` of them
    shadow_prompts: int = 16
    max_shadow_broken: int = 0

    def validated(self) -> Thresholds:
        problems = [
            f"{name} must be {rule}"
            for name, ok, rule in (
                ("bake_seconds", 0 <= self.bake_seconds <= 7 * 86400, "in [0, 604800]"),
                ("min_requests", 1 <= self.min_requests <= 1_000_000, "in [1, 1000000]"),
                ("max_wait_seconds", self.bake_seconds <= self.max_wait_seconds <= 30 * 86400, ">= bake_seconds"),
                ("poll_seconds", 0.1 <= self.poll_seconds <= 3600, "in [0.1, 3600]"),
                ("max_error_rate", 0 <= self.max_error_rate <= 1, "in [0, 1]"),
                ("max_down_rate", 0 <= self.max_down_rate <= 1, "in [0, 1]"),
                ("max_latency_ratio", 1 <= self.max_latency_ratio <= 100, "in [1, 100]"),
                ("latency_slack_ms", 0 <= self.latency_slack_ms <= 600_000, "in [0, 600000]"),
                ("max_fact_drop", 0 <= self.max_fact_drop <= 1, "in [0, 1]"),
                ("min_fact_checked", 1 <= self.min_fact_checked <= 1_000_000, "in [1, 1000000]"),
                ("shadow_prompts", 0 <= self.shadow_prompts <= 200, "in [0, 200]"),
                ("max_shadow_broken", 0 <= self.max_shadow_broken <= 200, "in [0, 200]"),
            )
            if not ok
        ]
        if problems:
            raise PlanInvalid("; ".join(problems))
        return self


def validated_steps(steps: list[int]) -> list[int]:
    if not steps or len(steps) > 20:
        raise PlanInvalid("steps: give 1 to 20 candidate weights in percent, e.g. [10, 50, 100]")
    if any(not 1 <= s <= 100 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise PlanInvalid(f"steps: weights must rise strictly within 1..100, got {steps}")
    if steps[-1] != 100:
        raise PlanInvalid(f"steps: the last step must send 100% to the candidate, got {steps[-1]}")
    return steps


# ---------------------------------------------------------------- the split


def bucket(release_id: str, sticky_key: str) -> int:
    """Where a conversation (or a request) falls in [0, 100) for a release: the same for the whole release."""
    digest = hashlib.sha256(f"{release_id}:{sticky_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def arm_for(release_id: str, sticky_key: str, candidate_weight: int) -> str:
    return CANDIDATE if bucket(release_id, sticky_key) < candidate_weight else CURRENT


# ---------------------------------------------------------------- the analysis


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])


def arm_figures(entries: list[tuple[str, int, str | None]]) -> dict:
    """One arm's figures from its history entries (status, latency in ms, rating): requests, errors and their rate,
    p95 latency of the completed ones, answers rated down and their rate among the completed ones."""
    completed = [(latency, rating) for status, latency, rating in entries if status == COMPLETED]
    errors = sum(1 for status, _, _ in entries if status == FAILED)
    down = sum(1 for _, rating in completed if rating == DOWN)
    return {
        "requests": len(entries),
        "errors": errors,
        "error_rate": round(errors / len(entries), 4) if entries else None,
        "p95_latency_ms": percentile([latency for latency, _ in completed], 95),
        "rated_down": down,
        "down_rate": round(down / len(completed), 4) if completed else None,
    }


def fact_figures(verdicts: list[bool]) -> dict:
    """One arm's answers that matched a known question, judged by its checks: how many, how many right, the share."""
    right = sum(verdicts)
    return {
        "judged": len(verdicts),
        "right": right,
        "fact_accuracy": round(right / len(verdicts), 4) if verdicts else None,
    }


def missing_requests(current: dict, candidate: dict, weight: int, thresholds: Thresholds) -> list[str]:
    """Each arm that gets traffic at `weight` and has fewer than its minimum number of requests, said in words."""
    return [
        f"{arm} has {figures['requests']} of {thresholds.min_requests} requests"
        for arm, figures, gets_traffic in ((CURRENT, current, weight < 100), (CANDIDATE, candidate, weight > 0))
        if gets_traffic and figures["requests"] < thresholds.min_requests
    ]


def judge(
    current: dict, candidate: dict, weight: int, thresholds: Thresholds, facts: dict | None = None
) -> tuple[bool, bool, str]:
    """(enough, passed, reason) for a step at `weight`: enough once every arm that gets traffic has its minimum
    number of requests; the candidate fails when its error rate or its rate of answers rated down exceeds the current
    version's by more than the threshold, or its p95 latency the current's times the ratio plus the slack, or, when
    both arms have `min_fact_checked` answers matched to a known question (`facts`: `fact_figures` per arm), its
    share of those right is below the current's by more than `max_fact_drop`."""
    short = missing_requests(current, candidate, weight, thresholds)
    if short:
        return False, False, "too little data: " + "; ".join(short)
    failures = []
    error_limit = (current["error_rate"] or 0.0) + thresholds.max_error_rate
    if (candidate["error_rate"] or 0.0) > error_limit:
        failures.append(f"error rate {candidate['error_rate']:.3f} > {error_limit:.3f}")
    down_limit = (current["down_rate"] or 0.0) + thresholds.max_down_rate
    if (candidate["down_rate"] or 0.0) > down_limit:
        failures.append(f"rated down {candidate['down_rate']:.3f} > {down_limit:.3f}")
    if candidate["p95_latency_ms"] is not None and current["p95_latency_ms"] is not None:
        latency_limit = current["p95_latency_ms"] * thresholds.max_latency_ratio + thresholds.latency_slack_ms
        if candidate["p95_latency_ms"] > latency_limit:
            failures.append(f"p95 latency {candidate['p95_latency_ms']:.0f} ms > {latency_limit:.0f} ms")
    if facts is not None:
        ours, theirs = facts[CANDIDATE], facts[CURRENT]
        if min(ours["judged"], theirs["judged"]) >= thresholds.min_fact_checked:
            fact_limit = round(theirs["fact_accuracy"] - thresholds.max_fact_drop, 4)
            if ours["fact_accuracy"] < fact_limit:
                failures.append(
                    f"{ours['right']} of {ours['judged']} fact-checked answers right "
                    f"({ours['fact_accuracy']:.3f} < {fact_limit:.3f}, the current's {theirs['fact_accuracy']:.3f} "
                    f"less {thresholds.max_fact_drop:g})"
                )
    if failures:
        return True, False, "the candidate failed: " + "; ".join(failures)
    return True, True, "the candidate is within every threshold"
