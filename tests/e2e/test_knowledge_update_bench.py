"""bench/knowledge_update's whole path with the tiny model: the followed task re-trains by itself after its documents
change, the rows they contradict are listed as stale, the new version goes before the gate, and the three arms answer
the same questions. The tiny model's figures mean nothing; the path and the result's shape are what is checked."""

from __future__ import annotations

import json

from bench.common import write_result
from bench.knowledge_update import (
    CHANGES,
    PRODUCT,
    RETRAINED_CLOSED_BOOK,
    RETRIEVAL_ONLY,
    Question,
    arm_figures,
    corrected,
    paired,
    run_bench,
)
from ml.examples import Example


def test_corrected_checks_ask_the_new_value():
    port, f4 = CHANGES[0], CHANGES[1]
    checks = [{"type": "number", "value": 7410.0, "unit": None}, {"type": "not_contains", "values": ["7411"]}]
    assert corrected(port, checks) == [{"type": "number", "value": 7420, "unit": None}, checks[1]]
    assert corrected(f4, [{"type": "contains_any", "values": ["$899"]}]) == [
        {"type": "contains_any", "values": ["$949"]}
    ]


def test_efficacy_retention_and_minutes_to_right():
    asked = [Question("efficacy", CHANGES[0].name, Example(f"e{i}", ""), None) for i in range(10)] + [
        Question("retention", None, Example(f"r{i}", ""), None) for i in range(4)
    ]
    before = [None] * 10 + [True, True, True, False]
    # 9 of 10 changed facts right: the target share, so right when served; 2 of the 3 right before still right, and
    # the one wrong before now right
    right = [True] * 9 + [False] + [True, True, False, True]
    figures = arm_figures(asked, right, before, 4.5)
    assert (figures["efficacy"]["right"], figures["efficacy"]["of"], figures["minutes_to_right"]) == (9, 10, 4.5)
    assert figures["retention"] == {
        "still_right": {"right": 2, "of": 3, "share": 0.6667, "ci95": figures["retention"]["still_right"]["ci95"]},
        "share_now": 0.75,
        "share_before": 0.75,
        "relative": 1.0,
    }
    # below the target share, or never served: never right
    assert arm_figures(asked, [False] + right[1:9] + [False] + right[10:], before, 4.5)["minutes_to_right"] is None
    assert arm_figures(asked, right, before, None)["minutes_to_right"] is None


def test_paired_counts():
    product, retrieval = [True, True, False, False, None], [True, False, True, False, True]
    assert paired(product, retrieval, [0, 1, 2, 3, 4]) == {
        "both_right": 1,
        "only_product": 1,
        "only_retrieval": 1,
        "neither": 1,
        "mcnemar_p": 1.0,
    }


async def test_the_quick_knowledge_update_runs_end_to_end(temporal_env, tmp_path):
    """With `--accept-proposals`: the user accepts every stale row's proposed correction before the re-training."""
    result = await run_bench(temporal_env, tmp_path, quick=True, max_steps=None, accept_proposals=True)
    path = write_result("knowledge_update", result, tmp_path / "knowledge_update.json")
    written = json.loads(path.read_text())

    # every changed fact is asked by rows of the sample (efficacy) and by its two paraphrases (generalisation)
    assert written["questions"]["efficacy"] >= len(CHANGES)
    assert written["questions"]["generalisation"] == 2 * len(CHANGES) and written["questions"]["retention"] > 0
    assert all(written["arms"][PRODUCT]["by_change"][c.name]["of"] >= 3 for c in CHANGES)
    # the rows the new document versions contradict were marked stale and listed, with the values that changed
    # (the quick subset holds every row that asks a changed fact: the product's rule finds the rows the bench asks)
    stale = written["stale_rows"]
    efficacy = {a["question"] for a in written["answers"] if a["kind"] == "efficacy"}
    assert {r["question"] for r in stale} == efficacy
    assert {r["old_value"] for r in stale} == {"7410", "$899", "$499", "10 minutes"}
    assert written["efficacy_rows_not_marked_stale"] == [] and written["questions"]["retention_stale"] == 0
    # each with a proposed correction that states the new value, accepted before the re-training read the dataset:
    # the rows are back, corrected, in the version the re-training trained on
    proposals = written["proposed_corrections"]
    assert proposals["without_proposal"] == [] and len(proposals["accepted"]) == len(stale)
    new_values = ("7420", "$949", "$549", "15 minutes")
    assert all(any(v in p["proposed_answer"] for v in new_values) for p in proposals["accepted"])
    assert all(r["state"] == "corrected" for r in stale)
    assert written["incremental_task"]["dataset_version"] == 3  # 1 uploaded, 2 marked stale, 3 corrected
    # the followed task re-trained on the new knowledge-base version and its version went before the gate by itself
    assert written["incremental_task"]["knowledge_base_version"] == 2
    # and it trained on examples generated from the statements the new versions changed, each answered by a new value
    trained = written["incremental_task"]["changed_fact_training"]
    assert trained["log"]["compared_with"] == 1 and trained["log"]["version"] == 2
    assert trained["examples"] and len(trained["examples"]) == trained["log"]["added"]
    # within the iteration's steps (6 batches of 4 with the tiny settings): each of them, with the rest replayed
    assert trained["replay"]["budget_rows"] == 24 and trained["replay"]["replayed"] < trained["replay"]["of"]
    new_statements = [c.new_text for c in CHANGES]
    assert all(any(text.rstrip(".;") in e["answer"] for text in new_statements) for e in trained["examples"])
    assert (written["gate"]["candidate_version"], written["gate"]["current_version"]) == (2, 1)
    assert written["gate"]["status"] in ("PROMOTED", "REFUSED", "INCONCLUSIVE")
    assert (written["production_version"] == 2) == (written["gate"]["status"] == "PROMOTED")
    timeline = written["timeline_minutes"]
    assert timeline["index_ready"] > 0 and 0 < timeline["retraining_started"] < timeline["retrained"]
    assert timeline["retrained"] <= timeline["gate_decided"]
    for arm in (PRODUCT, RETRIEVAL_ONLY, RETRAINED_CLOSED_BOOK):
        figures = written["arms"][arm]
        assert figures["efficacy"]["of"] == written["questions"]["efficacy"]
        assert figures["generalisation"]["of"] == written["questions"]["generalisation"]
        assert set(figures["retention"]) == {"still_right", "share_now", "share_before", "relative"}
    paired = written["paired_product_vs_retrieval_only"]["efficacy"]
    assert (
        paired["both_right"] + paired["only_product"] + paired["only_retrieval"] + paired["neither"]
        == written["questions"]["efficacy"]
    )
    assert written["machine"] and written["measured_at"]
