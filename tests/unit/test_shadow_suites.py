"""The blocking suites in a release step's shadow (`suites.shadow`): which real prompts ask what a case asks (the real
MiniLM embedder), the case asked with the real prompt, and the verdict from both versions' results."""

from __future__ import annotations

from suites.cases import parse_cases
from suites.shadow import asked_as, shadow_cases, shadow_verdict
from testkit.suites import CASES as SUITE_CASES

CASES = parse_cases([SUITE_CASES[1], SUITE_CASES[2]])  # "ram" (a fact check) and "weather" (a conversation)


def test_a_case_asked_with_a_real_prompt_keeps_its_assertions_and_earlier_turns():
    ram, weather = CASES
    asked = asked_as(ram, "how much memory does the server need")
    assert (asked.question, asked.checks, asked.id) == ("how much memory does the server need", ram.checks, "ram")
    asked = asked_as(weather, "Will it rain tomorrow?")
    assert asked.question == "Will it rain tomorrow?" and asked.history == weather.history and asked.refusal
    assert ram.question == "How much RAM does the server need?"  # the suite's own case is unchanged


def test_real_prompts_that_ask_what_a_case_asks_are_matched_once_each_up_to_the_limit(embedder):
    prompts = [
        "How much RAM does the server need?",
        "how much ram does the server need",  # the same prompt, written differently: asked once
        "What is the weather going to be tomorrow?",
        "Which port does the web console use?",  # asks nothing a case asks
        "How much RAM does the FerroLink server need?",  # below the similarity: another question
        "What amount of RAM does the server need?",
    ]
    found = shadow_cases(prompts, CASES, embedder, limit=10)
    assert [(c.id, c.case_id, c.prompt) for c in found] == [
        ("ram#1", "ram", "How much RAM does the server need?"),
        ("weather#1", "weather", "What is the weather going to be tomorrow?"),
        ("ram#2", "ram", "What amount of RAM does the server need?"),
    ]
    assert all(c.similarity >= 0.9 and c.case.question == c.prompt for c in found)
    assert [c.id for c in shadow_cases(prompts, CASES, embedder, limit=1)] == ["ram#1"]
    assert shadow_cases(prompts, CASES, embedder, limit=0) == [] and shadow_cases([], CASES, embedder, 5) == []


def test_the_candidate_fails_when_more_prompts_broke_than_allowed(embedder):
    found = shadow_cases(
        ["How much RAM does the server need?", "What is the weather going to be tomorrow?"], CASES, embedder, 10
    )
    current, candidate = {"ram#1": True, "weather#1": False}, {"ram#1": False, "weather#1": True}
    passed, reason, figures = shadow_verdict(found, current, candidate, max_broken=0)
    assert not passed and reason.endswith("more than 0 broken: ram: 'How much RAM does the server need?'")
    assert (figures["asked"], figures["broken"], figures["fixed"], figures["current_passed"]) == (2, 1, 1, 1)
    assert figures["broken_cases"] == [
        {"id": "ram#1", "case_id": "ram", "prompt": "How much RAM does the server need?"}
    ]
    passed, reason, _ = shadow_verdict(found, current, candidate, max_broken=1)
    assert passed and "1 broken, 1 fixed" in reason
    passed, reason, figures = shadow_verdict([], {}, {}, max_broken=0)
    assert passed and reason == "no real prompt of the step matched a blocking case" and figures["asked"] == 0
