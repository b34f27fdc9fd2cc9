"""bench/release's whole path with the tiny model: the same traffic against the alias alone, against its two versions
without a release, and under a running release at 50% (both arms answering), the release aborted at each round's end,
the ratios written, and the machinery's cost measured directly (the routing timed per request, the background CPU of
a holding release). The tiny model's figures mean nothing; the path and the result's shape are what is checked."""

from __future__ import annotations

import argparse
import asyncio
import json

from bench.release import measure


def test_the_release_bench_runs_both_phases_and_splits_the_release_phase_over_both_arms():
    args = argparse.Namespace(clients=4, requests=3, repeats=2, max_tokens=4, idle_seconds=1.0, quick=True, out=None)
    result = asyncio.run(measure(args))
    round_, second = result["rounds"]
    # each round asks its phases in another order, so drift falls on all of them
    assert round_["order"] == ["reference", "mixed", "release"] and second["order"] == ["mixed", "release", "reference"]
    assert round_["reference"]["requests"] == round_["mixed"]["requests"] == round_["release"]["requests"] == 12
    assert result["failed_requests"] == 0
    # 12 new conversations on a 50% split: both arms answered (the chance that one got none is 2 * 0.5**12)
    assert set(round_["release"]["arms"]) == {"current", "candidate"}
    assert sum(round_["release"]["arms"].values()) == 12
    assert set(result["release_over_alias_alone"]) == set(result["release_over_both_adapters_without_release"])
    assert set(result["release_over_alias_alone"]) == {"p50", "p95", "mean"}
    assert result["claim"]["target"] == 0.05
    low, high = result["release_over_both_adapters_without_release"]["mean"]["ci95"]
    assert low <= result["release_over_both_adapters_without_release"]["mean"]["mean"] <= high
    # the direct measure: every request's routing timed under its phase, the background CPU of each round's release
    direct = result["machinery_measured_directly"]
    assert direct["per_request"]["routed"] == {"reference": 24, "mixed": 24, "release": 24}
    assert direct["per_request"]["extra_ms_ci95"][0] <= direct["per_request"]["extra_ms"]
    assert all(r["release"]["cpu_per_second_holding"] > 0 for r in result["rounds"])
    assert direct["overhead_ci95_upper"] >= direct["overhead"]
    assert result["claim"]["holds"] == (result["claim"]["overhead_ci95_upper"] <= 0.05)
    json.dumps(result)  # plain JSON types only: the result is written as a file
