"""bench/feedback_fix's whole path with the tiny model: users ask the production alias through the serving app, the
wrong answers are corrected, the corrections train a feedback round, and both versions answer the same questions. The
tiny model's figures mean nothing; the path and the result's shape are what is checked."""

from __future__ import annotations

import json

from bench.common import write_result
from bench.feedback_fix import QUICK_FACTS, fact_key, fix_rates, paired, run_bench, users_facts
from bench.sample_task import sample_rows


def test_users_facts_are_kept_out_of_the_dataset_with_their_paraphrases():
    rows = sample_rows()
    facts, kept = users_facts(rows)
    assert len(facts) >= 10 and all(fact.paraphrases for fact in facts)
    asked = {e.question for fact in facts for e in (fact.asked, *fact.paraphrases)}
    assert not asked & {row.get("question") for row in kept}
    assert len(kept) < len(rows)
    # polarity alone, or a number without a unit alone, is too weak to call two questions one fact
    assert fact_key([{"type": "polarity", "value": "yes"}]) is None
    assert fact_key([{"type": "number", "value": 4.0, "unit": None}]) is None
    assert fact_key([{"type": "number", "value": 4.0, "unit": "days"}]) is not None


def test_paired_counts_and_the_fix_rate_against_the_control():
    assert paired([False, False, True, True, None], [True, False, True, False, True]) == {
        "fixed": 1,
        "broken": 1,
        "still_right": 1,
        "still_wrong": 1,
        "mcnemar_p": 1.0,
    }
    rates = fix_rates([True] * 8 + [False] * 2, [True] * 2 + [False] * 8)
    assert (rates["corrected"]["share"], rates["control"]["share"]) == (0.8, 0.2)
    assert rates["fisher_p_greater"] < 0.05
    assert fix_rates([True, False], [True, False])["fisher_p_greater"] > 0.5


async def test_the_quick_feedback_round_runs_end_to_end(temporal_env, tmp_path):
    result = await run_bench(temporal_env, tmp_path, quick=True, max_steps=None)
    written = json.loads(write_result("feedback_fix", result, tmp_path / "feedback_fix.json").read_text())
    assert written["users_facts"] == QUICK_FACTS
    wrong = written["users_questions_wrong_when_served"]
    assert 0 < wrong <= QUICK_FACTS and written["served_share_right"]["of"] == QUICK_FACTS
    # every wrong answer was corrected, and the feedback round trained on each correction (none asks a held-out one)
    corrections = written["feedback_round"]["corrections"]
    assert corrections["trained"] == wrong and corrections["near_held_out"] == [] and corrections["weight"] == 2
    assert written["questions"]["corrected"] == wrong and written["questions"]["test"] > 0
    assert written["questions"]["paraphrases_of_corrected"] >= wrong
    for name, count in written["questions"].items():
        assert written["right"][name]["before"]["of"] == written["right"][name]["after"]["of"] == count
        counts = written["paired"][name]
        assert counts["fixed"] + counts["broken"] + counts["still_right"] + counts["still_wrong"] == count
    assert written["gate"]["status"] in ("PROMOTED", "REFUSED", "INCONCLUSIVE")
    assert written["corrected_against_control"]["corrected"]["of"] == wrong
    assert {a["set"] for a in written["answers"]} == {"corrected", "paraphrases_of_corrected"}
    assert written["machine"] and written["measured_at"]
