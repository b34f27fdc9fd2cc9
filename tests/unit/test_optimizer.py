"""Data optimization: cleaning the sample dataset, stable leak-free splits, leak detection, bad-case targeting."""

from __future__ import annotations

import json
import random

import pytest

from ml.examples import Example, normalize_text
from ml.optimizer import (
    CORRECTION_WEIGHT,
    REWRITE_TEMPLATES,
    CleaningConfig,
    SplitConfig,
    Splits,
    TargetingConfig,
    clean_dataset,
    corrections_for_training,
    expand_weights,
    find_leaks,
    follow_dataset,
    question_groups,
    remove_near_duplicates,
    split_examples,
    target_bad_cases,
    within_budget,
)
from schemas.reports import BadCase, Suggestion, SuggestionGroup


@pytest.fixture(scope="module")
def cleaned_sample(sample_dataset):
    return clean_dataset(sample_dataset, "jsonl")


# ---------------------------------------------------------------- cleaning


def test_clean_sample_counts(cleaned_sample):
    assert cleaned_sample.rows_in == 332
    assert cleaned_sample.removed_counts == {
        "empty": 4,
        "malformed": 1,
        "too_long": 2,
        "exact_duplicate": 8,
        "near_duplicate": 3,
    }
    assert len(cleaned_sample.examples) == 314
    assert cleaned_sample.rows_in - sum(cleaned_sample.removed_counts.values()) == len(cleaned_sample.examples)


def test_clean_sample_removed_rows_are_explained(cleaned_sample):
    malformed = cleaned_sample.removed["malformed"]
    assert len(malformed) == 1 and "['a', 'q']" in malformed[0]["detail"]
    assert all(r["detail"] == "empty answer" for r in cleaned_sample.removed["empty"])
    assert all(r["detail"].startswith("same as line ") for r in cleaned_sample.removed["exact_duplicate"])
    assert all(r["detail"].startswith("near line ") for r in cleaned_sample.removed["near_duplicate"])
    removed_lines = [r["line"] for rows in cleaned_sample.removed.values() for r in rows]
    kept_lines = [e.source_line for e in cleaned_sample.examples]
    assert len(set(removed_lines)) == len(removed_lines) == 18
    assert not set(removed_lines) & set(kept_lines)
    assert sorted(removed_lines + kept_lines) == list(range(1, 333))


def test_clean_sample_output_is_normalized_and_unique(cleaned_sample):
    examples = cleaned_sample.examples
    assert len({e.id for e in examples}) == len(examples)
    assert all(e.question == normalize_text(e.question) and e.answer == normalize_text(e.answer) for e in examples)
    assert all(e.origin == "source" and e.weight == 1 and e.lineage == [] for e in examples)
    assert [e.source_line for e in examples] == sorted(e.source_line for e in examples)  # file order kept


def test_clean_dataset_reasons_and_lines(write_file):
    rows = [
        {"question": "What is FerroLink?", "answer": "A file sync tool."},  # 1 kept
        {"question": "  what is   FERROLINK? ", "answer": "a file sync tool."},  # 2 exact duplicate after normalization
        {"question": "What is FerroLink ?", "answer": "A file sync tool!"},  # 3 near duplicate of 1
        {"question": "Empty?", "answer": "   "},  # 4 empty answer
        {"question": "", "answer": "No question"},  # 5 empty question
        {"q": "Wrong", "a": "fields"},  # 6 malformed
        {"question": "Long?", "answer": "x" * 30},  # 7 too long (limit 20)
        {"question": "Which port?", "answer": "7400"},  # 8 kept
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows) + "{not json\n"  # 9 malformed
    result = clean_dataset(write_file("d.jsonl", text), "jsonl", CleaningConfig(max_answer_chars=20))
    assert result.rows_in == 9
    assert [(e.source_line, e.question) for e in result.examples] == [(1, "What is FerroLink?"), (8, "Which port?")]
    assert result.removed["exact_duplicate"] == [{"line": 2, "detail": "same as line 1"}]
    assert result.removed["near_duplicate"] == [{"line": 3, "detail": "near line 1"}]
    assert result.removed["empty"] == [{"line": 4, "detail": "empty answer"}, {"line": 5, "detail": "empty question"}]
    assert [r["line"] for r in result.removed["malformed"]] == [6, 9]
    assert result.removed["too_long"] == [{"line": 7, "detail": "question 5 / answer 30 characters"}]


def test_remove_near_duplicates_keeps_the_first():
    a = Example("How do I reset my password?", "Use the account page.")
    b = Example("How do I reset my password ?", "Use the account page!")
    c = Example("Which port does the agent use?", "Port 7400.")
    kept, dropped = remove_near_duplicates([a, b, c], 90.0)
    assert kept == [a, c]
    assert dropped == [(b, a)]


# ---------------------------------------------------------------- splits


def test_split_sizes_on_sample(cleaned_sample):
    splits = split_examples(cleaned_sample.examples)
    assert (len(splits.train), len(splits.feedback), len(splits.test)) == (220, 47, 47)
    ids = [e.id for e in splits.train + splits.feedback + splits.test]
    assert sorted(ids) == sorted(e.id for e in cleaned_sample.examples)  # a partition
    assert find_leaks(splits.train, splits.held_out()) == []


def test_split_is_stable_under_shuffling(cleaned_sample):
    def membership(splits: Splits) -> dict[str, set[str]]:
        return {name: {e.id for e in getattr(splits, name)} for name in ("train", "feedback", "test")}

    reference = membership(split_examples(cleaned_sample.examples))
    for seed in (1, 2):
        shuffled = list(cleaned_sample.examples)
        random.Random(seed).shuffle(shuffled)
        assert membership(split_examples(shuffled)) == reference


def test_split_keeps_file_order_inside_each_split(cleaned_sample):
    splits = split_examples(cleaned_sample.examples)
    for part in (splits.train, splits.feedback, splits.test):
        lines = [e.source_line for e in part]
        assert lines == sorted(lines)


def test_split_small_dataset_gets_min_sizes(cleaned_sample):
    examples = cleaned_sample.examples[:14]
    assert len(question_groups(examples)) == 14  # all questions distinct
    splits = split_examples(examples)
    assert (len(splits.train), len(splits.feedback), len(splits.test)) == (6, 4, 4)
    twelve = split_examples(examples[:12])
    assert (len(twelve.train), len(twelve.feedback), len(twelve.test)) == (4, 4, 4)


def test_split_too_few_examples(cleaned_sample):
    with pytest.raises(ValueError, match="only 11 usable examples"):
        split_examples(cleaned_sample.examples[:11])
    with pytest.raises(ValueError, match="need at least 15"):
        split_examples(cleaned_sample.examples[:14], SplitConfig(min_examples=5))


def test_split_custom_fractions(cleaned_sample):
    splits = split_examples(cleaned_sample.examples, SplitConfig(feedback_fraction=0.1, test_fraction=0.2))
    # near-identical questions move as a group, so a split can overshoot its target by a group's extra members
    assert 63 <= len(splits.test) <= 65
    assert 31 <= len(splits.feedback) <= 33
    assert len(splits.train) + len(splits.feedback) + len(splits.test) == 314


def test_near_identical_questions_never_straddle_splits(cleaned_sample):
    base = cleaned_sample.examples
    twins = []
    for e in base[::10]:  # 32 twins with a near-identical question and a different answer
        twins.append(Example(e.question.rstrip("?") + " ?", e.answer[::-1]))
    examples = base + twins
    splits = split_examples(examples)
    where = {e.id: name for name in ("train", "feedback", "test") for e in getattr(splits, name)}
    for original, twin in zip(base[::10], twins, strict=True):
        assert where[original.id] == where[twin.id], original.question
    assert find_leaks(splits.train, splits.held_out()) == []


# ---------------------------------------------------------------- leaks


def test_find_leaks_exact_and_near_copies():
    held = [
        Example("How do I reset my password?", "Open Settings and choose Reset password."),
        Example("Which port does the agent use?", "The agent listens on port 7400."),
    ]
    exact = Example("how do I reset my password?", "open settings and choose reset password.")
    near = Example("Which port does the agent use ?", "The agent listens on port 7400!")
    clean = Example("Is there an education discount?", "Yes, 40% for schools.")
    leaks = find_leaks([exact, near, clean], held)
    pairs = {(t, h) for t, h, _ in leaks}
    assert pairs == {(exact.id, held[0].id), (near.id, held[1].id)}
    assert all(score >= 90 for _, _, score in leaks)
    assert max(score for t, _, score in leaks if t == exact.id) == 100.0


def test_find_leaks_question_only_copy():
    held = [Example("How many devices can a Pro user link?", "Up to 10 devices.")]
    same_question = Example(
        "How many devices can a Pro user link?",
        "Pro users may link an unlimited number of laptops, phones and servers.",
    )
    leaks = find_leaks([same_question], held)
    assert leaks == [(same_question.id, held[0].id, 100.0)]


def test_find_leaks_clean_and_empty():
    train = [
        Example("What is the default log level?", "info"),
        Example("Do pairing codes expire?", "After 10 minutes."),
    ]
    held = [Example("How much RAM does a server need?", "4 GB minimum.")]
    assert find_leaks(train, held) == []
    assert find_leaks([], held) == []
    assert find_leaks(train, []) == []


# ---------------------------------------------------------------- targeting bad cases

TRAIN = [
    ("How do I reset my FerroLink password?", "Open Settings > Account and choose Reset password."),
    ("What port does the FerroLink agent listen on?", "The agent listens on TCP port 7400 by default."),
    ("How much does the Pro plan cost?", "Pro costs $8 per user per month, billed annually."),
    ("Which operating systems does the desktop client support?", "Linux, macOS and Windows are supported."),
    ("Is there an education discount?", "Yes, schools and universities receive a 40% discount on paid tiers."),
    ("What does error FL-204 mean?", "FL-204 means a sync conflict: the same file was changed on two devices."),
]
FEEDBACK = [
    ("I forgot my password. How can I get a new one?", "Use Reset password under Settings > Account."),
    ("Which TCP port is used by the agent?", "Port 7400."),
]
TEST = [
    ("How long are deleted files kept in the trash?", "Deleted files can be recovered for 21 days."),
]


def _splits() -> tuple[list[Example], list[Example]]:
    train = [Example(q, a) for q, a in TRAIN]
    held = [Example(q, a) for q, a in FEEDBACK + TEST]
    assert find_leaks(train, held) == []
    return train, held


def _feedback_case(example: Example) -> BadCase:
    return BadCase(
        example_id=example.id,
        question=example.question,
        expected=example.answer,
        got="no idea",
        overall=0.1,
        split="feedback",
        error_type="wrong_content",
    )


def _train_case(example: Example) -> BadCase:
    return BadCase(
        example_id=example.id,
        question=example.question,
        expected=example.answer,
        got=None,
        loss=3.2,
        split="train",
        error_type="high_training_loss",
    )


def _suggestion(suggestion_id: str, evidence: list[str]) -> Suggestion:
    return Suggestion(
        id=suggestion_id,
        kind="targeted_training_data",
        split="feedback",
        error_type="wrong_content",
        group=SuggestionGroup(label="a topic", size=len(evidence)),
        evidence_bad_case_ids=evidence,
        action="target",
        text="",
    )


def test_target_bad_cases_upweights_nearest_and_adds_rewrite(embedder):
    train, held = _splits()
    case = _feedback_case(held[0])
    suggestions = [_suggestion("s1-1", [case.example_id])]
    result = target_bad_cases(train, held, [case], suggestions, embedder, TargetingConfig(neighbours_per_bad_case=1))

    assert (result.upweighted, result.added, result.targeted_bad_cases, result.rejected) == (1, 1, 1, {})
    by_question = {e.question: e for e in result.train}
    nearest = by_question[TRAIN[0][0]]  # the password question
    assert nearest.weight == 2
    assert [c["action"] for c in nearest.lineage] == ["upweight"]
    cause = nearest.lineage[0]
    assert (cause["bad_case_id"], cause["suggestion_id"], cause["split"], cause["reason"]) == (
        held[0].id,
        "s1-1",
        "feedback",
        "nearest_to_failure",
    )
    assert 0.3 <= cause["similarity"] <= 1.0
    assert all(e.weight == 1 and not e.lineage for e in result.train if e is not nearest and e.origin == "source")

    rewrites = [e for e in result.train if e.origin == "rewrite"]
    assert len(rewrites) == 1
    rewrite = rewrites[0]
    assert rewrite.question == REWRITE_TEMPLATES[0].format(q=TRAIN[0][0])
    assert rewrite.answer == TRAIN[0][1]
    assert rewrite.lineage == [{**cause, "action": "rewrite", "rewrite_of": nearest.id}]
    assert result.train[: len(train)] == [r for r in result.train if r.origin == "source"]  # originals first, in order
    assert find_leaks(result.train, held) == []


def test_target_bad_cases_does_not_mutate_input(embedder):
    train, held = _splits()
    before = [e.to_json() for e in train]
    target_bad_cases(train, held, [_feedback_case(held[0]), _train_case(train[2])], [], embedder)
    assert [e.to_json() for e in train] == before


def test_target_bad_cases_lineage_and_no_leaks_with_defaults(embedder):
    train, held = _splits()
    cases = [_feedback_case(held[0]), _feedback_case(held[1]), _train_case(train[2])]
    suggestions = [_suggestion("s2-1", [held[0].id, held[1].id]), _suggestion("s2-2", [train[2].id])]
    result = target_bad_cases(train, held, cases, suggestions, embedder)

    assert result.targeted_bad_cases == 3
    touched = [e for e in result.train if e.lineage]
    assert len([e for e in touched if e.origin == "source"]) == result.upweighted
    assert len([e for e in touched if e.origin == "rewrite"]) == result.added > 0
    expected_suggestion = {held[0].id: "s2-1", held[1].id: "s2-1", train[2].id: "s2-2"}
    for example in touched:
        for cause in example.lineage:
            assert cause["bad_case_id"] in expected_suggestion
            assert cause["suggestion_id"] == expected_suggestion[cause["bad_case_id"]]
    for example in result.train:
        if example.origin == "source":
            assert example.weight == (2 if example.lineage else 1)

    # each feedback bad case found its own topic's training example as a neighbour
    causes_of = {e.question: {c["bad_case_id"] for c in e.lineage} for e in result.train if e.origin == "source"}
    assert held[0].id in causes_of[TRAIN[0][0]]
    assert held[1].id in causes_of[TRAIN[1][0]]
    # the train-split bad case targets itself directly, not through embeddings
    pro = next(e for e in result.train if e.id == train[2].id)
    assert {
        "bad_case_id": train[2].id,
        "suggestion_id": "s2-2",
        "split": "train",
        "reason": "high_training_loss",
        "action": "upweight",
    } in pro.lineage
    assert find_leaks(result.train, held) == []
    # feedback questions themselves never enter training
    assert not {e.question for e in result.train} & {e.question for e in held}


def test_rewrite_near_a_held_out_question_is_rejected(embedder):
    train, held = _splits()
    target = train[3]
    trap = Example(REWRITE_TEMPLATES[0].format(q=target.question), "Only the web console is supported on ChromeOS.")
    held = held + [trap]
    assert find_leaks(train, held) == []  # the original itself does not leak
    result = target_bad_cases(train, held, [_train_case(target)], [], embedder)
    assert result.upweighted == 1
    assert result.added == 0
    assert result.rejected == {"near_held_out": 1}
    assert not [e for e in result.train if e.origin == "rewrite"]
    assert find_leaks(result.train, held) == []


def test_rewrite_whose_whole_example_leaks_is_rejected(embedder):
    answer = (
        "FerroLink keeps hourly snapshots for 48 hours, daily snapshots for 30 days, weekly snapshots for "
        "12 weeks and monthly snapshots for 12 months, all configurable per library."
    )
    train = [Example("Snapshot retention?", answer), Example("Which port does the agent use?", "Port 7400.")]
    held = [Example("What is the snapshot retention?", answer)]  # question differs, the whole example does not
    result = target_bad_cases(train, held, [_train_case(train[0])], [], embedder)
    assert result.added == 0
    assert result.rejected == {"near_held_out": 1}


def test_rewrite_duplicating_an_existing_example_is_rejected(embedder):
    base = Example("How do I pair a device?", "Scan the pairing code shown in the console.")
    already = Example(REWRITE_TEMPLATES[0].format(q=base.question), base.answer)
    train = [base, already]
    held = [Example("What does error FL-204 mean?", "A sync conflict.")]
    result = target_bad_cases(train, held, [_train_case(base)], [], embedder)
    assert result.rejected == {"duplicate": 1}
    assert result.added == 0
    assert len(result.train) == 2


def test_target_bad_cases_without_cases(embedder):
    train, held = _splits()
    result = target_bad_cases(train, held, [], [], embedder)
    assert (result.upweighted, result.added, result.targeted_bad_cases) == (0, 0, 0)
    assert [e.to_json() for e in result.train] == [e.to_json() for e in train]


def test_min_similarity_filters_unrelated_neighbours(embedder):
    train, held = _splits()
    result = target_bad_cases(
        train, held, [_feedback_case(held[0])], [], embedder, TargetingConfig(min_similarity=0.99)
    )
    assert (result.upweighted, result.added, result.targeted_bad_cases) == (0, 0, 0)


def test_expand_weights():
    a, b, c = Example("a?", "1"), Example("b?", "2", weight=3), Example("c?", "3", weight=0)
    assert [e.question for e in expand_weights([a, b, c])] == ["a?", "b?", "b?", "b?", "c?"]
    assert expand_weights([]) == []


def test_follow_dataset_leaves_out_excluded_rows_and_takes_corrected_answers_in_the_same_split():
    """An incremental task's inherited splits brought to its dataset's head: a stale (excluded) row leaves, a corrected
    row keeps its split with the new answer and checks, an example without a row (generated) stays."""
    port = Example("Which port does the web console use?", "TCP port 7410.", checks=[{"type": "number", "value": 7410}])
    price = Example("How much is the F2?", "It costs $499.")
    drives = Example("Are drives included?", "No, drives are not included.")
    generated = Example("What is LAN discovery's port?", "UDP port 7413.", origin="generated")
    splits = Splits(train=[drives, generated], feedback=[price], test=[port])
    records = [
        {"question": "Which port does the web console use?", "answer": "TCP port 7410.", "excluded": True},
        {
            "question": "How much is the F2?",
            "answer": "It costs $549.",
            "checks": [{"type": "contains_any", "values": ["$549"]}],
        },
        {"question": "Are drives included?", "answer": "No, drives are not included.", "tags": ["reviewed"]},
    ]
    followed = follow_dataset(splits, records)
    assert (followed.dropped, followed.corrected) == (1, 1)
    assert followed.splits.test == [] and followed.splits.train == [drives, generated]
    [corrected] = followed.splits.feedback
    assert (corrected.question, corrected.answer) == ("How much is the F2?", "It costs $549.")
    assert corrected.checks == [{"derived": False, "type": "contains_any", "values": ["$549"]}]
    assert corrected.id == price.id  # the same example (its passages and its history follow it)
    # the same rows again change nothing; an unreadable record is no row
    again = follow_dataset(followed.splits, records + [{"text": "no pair"}])
    assert (again.dropped, again.corrected, again.splits) == (0, 0, followed.splits)


def test_corrections_train_weighted_with_their_source_except_those_that_copy_a_held_out_question():
    held_out = [Example("What port does the web console use?", "Port 7410.")]
    corrections = [
        Example("Can I pause the agent during a backup?", "Yes: run 'ferro agent pause'."),
        # the held-out question under another answer, as a user's correction would put it: left out
        Example("What port does the web console use ?", "The web console uses port 7420."),
    ]
    source = {"dataset_id": "corrections", "version": 3}
    kept = corrections_for_training(corrections, held_out, source)
    assert [(e.question, e.weight, e.origin) for e in kept.examples] == [
        ("Can I pause the agent during a backup?", CORRECTION_WEIGHT, "correction")
    ]
    assert kept.examples[0].lineage == [{"action": "corrected_answer", "dataset_id": "corrections", "version": 3}]
    assert [e.answer for e in kept.near_held_out] == ["The web console uses port 7420."]
    assert corrections[0].weight == 1  # the inputs are not changed
    # nothing held out: everything trains
    assert len(corrections_for_training(corrections, [], source).examples) == 2


def test_a_budget_keeps_every_priority_example_and_replays_a_seeded_sample_of_the_rest():
    priority = [Example(f"fix {i}?", "Fixed.", weight=2) for i in range(3)]
    rest = [Example(f"known {i}?", "Known.") for i in range(20)]
    train, replay = within_budget(priority, rest, budget_rows=10, seed=1)
    assert train[-3:] == priority and len(train) == 3 + 4  # 6 rows of corrections, 4 replayed
    assert replay == {"budget_rows": 10, "replayed": 4, "of": 20}
    assert within_budget(priority, rest, budget_rows=10, seed=1)[0] == train  # seeded
    assert within_budget(priority, rest, budget_rows=10, seed=2)[0] != train
    # it fits, or no budget: everything
    assert len(within_budget(priority, rest, budget_rows=26, seed=1)[0]) == 23
    assert within_budget(priority, rest, budget_rows=None, seed=1)[1] == {"budget_rows": None, "replayed": 20, "of": 20}
    # corrections alone over the budget: all of them still, nothing replayed
    assert within_budget(priority, rest, budget_rows=4, seed=1)[0] == priority
