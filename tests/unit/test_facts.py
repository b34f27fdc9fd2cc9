"""Fact checks: parsing them from rows (with errors that name the field), judging answers by their facts rather than
their wording, deriving checks from reference answers, and the statistics that report and compare right answers."""

from __future__ import annotations

import pytest

from facts.derive import common_terms, derive_checks
from facts.judge import judge, numbers_in, passages_state, run_check, stance
from facts.stats import mcnemar_exact, wilson_interval
from schemas.checks import ContainsAll, ContainsAny, NotContains, Number, Polarity, parse_checks


def checks(*raw: dict):
    return parse_checks(list(raw))


# ---------------------------------------------------------- the wrong answers are wrong, their right ones right


@pytest.mark.parametrize(
    "question, reference, wrong, right",
    [
        (
            "Will ferro config reload pick up a new port number?",
            "No, port changes require a service restart.",
            "Yes, ferro config reload will pick up a new port number.",
            "No. You need to restart the service for a new port.",
        ),
        (
            "I got FL-204; did I lose changes?",
            "No, both versions are kept.",
            "Yes, you lost changes.",
            "No; both copies are kept.",
        ),
        (
            "Does the FerroLink server run on Windows?",
            "No, the server runs only on Linux.",
            "Yes, it runs on Windows 10 or 11.",
            "It does not: Linux only.",
        ),
    ],
)
def test_a_yes_no_answer_is_judged_by_its_polarity_not_its_words(question, reference, wrong, right):
    derived = derive_checks(question, reference)
    assert [(c.type, c.value, c.derived) for c in derived] == [("polarity", "no", True)]
    assert not judge(wrong, derived).right and judge(right, derived).right


def test_values_the_passage_contradicts_fail_even_in_the_references_words():
    cipher = checks(
        {"type": "contains_any", "values": ["XChaCha20-Poly1305", "XChaCha20"]},
        {"type": "not_contains", "values": ["AES"]},
    )
    assert not judge("Yes, FerroLink uses AES-256-CBC for encryption at rest.", cipher).right
    assert judge("It uses XChaCha20-Poly1305, not a block cipher.", cipher).right
    ports = checks({"type": "contains_all", "values": ["7412", ["7410", "web console port"]]})
    assert not judge("Yes, both are on port 7411.", ports).right
    assert judge("No: metrics are on 7412 and the console on 7410.", ports).right
    meaning = checks(
        {"type": "contains_any", "values": ["sync conflict", "conflict"]}, {"type": "not_contains", "values": ["licen"]}
    )
    assert (
        not judge("FL-204 means your licence has expired.", meaning).right and judge("A sync conflict.", meaning).right
    )


def test_passages_state_the_values_their_checks_look_for_and_cannot_answer_yes_or_no():
    passages = ["The web console listens on TCP port 7410.", "Metrics are served on port 7412."]
    # every value-seeking check finds its value in the passages: a wrong answer beside them misread them
    assert passages_state(passages, [Number(value=7412), ContainsAny(values=["metrics"])]) is True
    # one value the passages never state: retrieval missed it
    assert passages_state(passages, [Number(value=7412), ContainsAny(values=["Prometheus"])]) is False
    assert passages_state(passages, [Number(value=7411)]) is False
    # a yes/no verdict and a value to avoid cannot be looked up in a text; nothing to look in, nothing to say
    assert passages_state(passages, [Polarity(value="no"), NotContains(values=["7411"])]) is None
    assert passages_state([], [Number(value=7410)]) is None


def test_numbers_are_read_in_digits_or_words_with_their_units():
    assert run_check(Number(value=14), "It keeps fourteen rotated files.").passed
    assert run_check(Number(value=21, unit="days"), "Deleted files stay in the trash for twenty-one days.").passed
    assert not run_check(Number(value=21, unit="days"), "They stay for 21 hours.").passed
    assert run_check(Number(value=4, unit="GB"), "At least 4GB, and 8 gigabytes are recommended.").passed
    assert run_check(Number(value=7412), "Metrics are served on port 7,412.").passed
    assert run_check(Number(value=499, unit="$"), "The F2 costs $499.").passed
    assert run_check(Number(value=0.5, tolerance=0.1), "About 0.55 of them.").passed
    # a hyphenated quantity keeps its unit; a range or a date is not one
    assert run_check(Number(value=15, unit="days"), "After a 15-day grace period it is read-only.").passed
    assert not run_check(Number(value=15, unit="days"), "A 15-hour grace period.").passed
    assert numbers_in("ports 7410-7412") == ((7410.0, ""), (7412.0, ""))
    failed = run_check(Number(value=7412), "Port 7411.")
    assert not failed.passed and failed.detail == "expected 7412, found 7411"
    # an identifier or a version states no quantity; "a" is an article, not the number one
    assert numbers_in("FL-204 means a conflict in FerroLink 4.2.1") == ()
    assert not run_check(Number(value=204), "Error FL-204.").passed


def test_stance_reads_the_leading_word_then_a_closing_verdict_then_a_negation_in_the_first_clause():
    assert [
        stance(a)
        for a in (
            "Yes, it will.",
            "No.",
            "It does not.",
            "FerroLink runs on Windows 10.",
            "Ports need a restart, but not others.",
            "",
            "Single sign-on is available only with an Enterprise license, so no.",
            "It does not need a restart; yes.",
            "No, it runs on Linux only, so yes.",  # the leading word comes first
            "It listens on 7410, not no port.",  # "no" must close the answer after a comma to be its verdict
        )
    ] == ["yes", "no", "no", "yes", "yes", None, "no", "yes", "no", "yes"]


def test_contains_matches_whole_words_case_insensitively_after_normalisation():
    assert run_check(ContainsAny(values=["TOTP"]), "It supports totp two-factor codes.").passed
    assert not run_check(ContainsAny(values=["port 741"]), "port 7410").passed  # not a prefix of a longer number
    assert run_check(ContainsAny(values=["ferro sync --once"]), "Use `ferro sync --once`.").passed
    assert run_check(ContainsAll(values=["Tallinn", ["Estonia", "EE"]]), "Headquartered in Tallinn, Estonia.").passed
    assert run_check(ContainsAny(values=["don't"]), "You don\u2019t need to.").passed  # typographic apostrophe
    assert run_check(parse_checks([{"type": "regex", "pattern": r"\b74(10|12)\b"}])[0], "Use 7412.").passed


def test_an_empty_answer_or_a_row_without_checks_is_never_right():
    assert not judge("", [Polarity(value="no")]).right
    assert not judge("Anything at all.", []).right


# ---------------------------------------------------------------- parsing checks


@pytest.mark.parametrize(
    "raw, message",
    [
        ("polarity", "'checks' must be a list"),
        ([{"type": "sounds_right"}], "'checks.0': Input tag 'sounds_right'"),
        ([{"type": "polarity", "value": "maybe"}], "'checks.0.polarity.value'"),
        ([{"type": "number", "value": "twelve"}], "'checks.0.number.value'"),
        ([{"type": "regex", "pattern": "("}], "not a valid regular expression"),
        ([{"type": "contains_any", "values": []}], "'checks.0.contains_any.values'"),
        ([{"type": "contains_all", "values": ["a", []]}], "alternatives"),
        ([{"type": "number", "value": 1, "tolerance": -1}], "tolerance"),
        ([{"type": "polarity", "value": "yes", "extra": 1}], "extra"),
    ],
)
def test_bad_checks_are_refused_naming_the_check_and_the_field(raw, message):
    with pytest.raises(ValueError) as caught:
        parse_checks(raw)
    assert message in str(caught.value), str(caught.value)


# ---------------------------------------------------------------- deriving checks


def test_derived_checks_take_numbers_units_codes_and_names_the_question_lacks():
    def shapes(question, reference, common=frozenset()):
        return [
            (c.type, getattr(c, "values", None) or getattr(c, "value", None), getattr(c, "unit", None))
            for c in derive_checks(question, reference, common)
        ]

    assert shapes(
        "How much RAM does a server need?", "A server needs at least 4 GB of RAM, and 8 GB is recommended."
    ) == [("number", 4.0, "gb"), ("number", 8.0, "gb")]
    assert shapes(
        "For 10 users, what does Pro cost per month?", "At $8 per user per month, 10 Pro users cost $80 per month."
    ) == [("number", 8.0, "$"), ("number", 80.0, "$")]
    assert shapes("When do backups run?", "Scheduled backups run daily at 02:00 server local time.") == [
        ("contains_all", ["02:00"], None)
    ]
    assert shapes("Which command syncs once?", "Use ferro sync --once, which performs one sync pass.") == [
        ("contains_all", ["--once"], None)
    ]
    assert shapes(
        "Where do I send the bundle?", "Run ferro doctor and send support the file /tmp/ferro-doctor.tar.gz."
    ) == [("contains_all", ["/tmp/ferro-doctor.tar.gz"], None)]
    assert shapes(
        "What encrypts data at rest?", "FerroLink encrypts it with XChaCha20-Poly1305.", frozenset({"ferrolink"})
    ) == [("contains_all", ["XChaCha20-Poly1305"], None)]
    assert shapes("Where is the company based?", "It is headquartered in Tallinn, Estonia.") == [
        ("contains_all", ["Tallinn", "Estonia"], None)
    ]
    assert all(c.derived for c in derive_checks("q?", "It is 5 GB."))
    assert common_terms(["FerroLink does a.", "FerroLink does b.", "Tallinn."], share=0.5) == frozenset({"ferrolink"})


def test_every_derived_check_passes_on_its_own_reference(sample_pairs):
    common = common_terms([a for _, a in sample_pairs])
    assert all(judge(a, derive_checks(q, a, common)).right for q, a in sample_pairs)


@pytest.fixture(scope="module")
def sample_pairs():
    import json
    from pathlib import Path

    from ml.examples import record_to_pair

    pairs = []
    for line in (Path(__file__).parents[2] / "data" / "sample" / "ferrolink_faq.jsonl").read_text().splitlines():
        try:
            question, answer = record_to_pair(json.loads(line))
        except ValueError:
            continue
        if answer.strip():
            pairs.append((question, answer))
    return pairs


# ---------------------------------------------------------------- statistics


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(47, 47)
    assert high == 1.0 and round(low, 3) == 0.924
    low, high = wilson_interval(24, 47)
    assert (round(low, 3), round(high, 3)) == (0.372, 0.647)  # p 0.511, centre 0.510, half-width 0.137 by hand
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_uses_only_the_questions_the_two_models_disagree_on():
    # 10 turned right, 1 turned wrong: a two-sided exact binomial test on 11 discordant pairs
    assert round(mcnemar_exact(10, 1), 4) == 0.0117
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0


def test_the_sample_ships_reviewed_checks_that_its_readme_counts_and_its_references_pass():
    """Every usable row of the sample carries reviewed checks its reference passes; how many of them differ from what
    the rules derive is what data/sample/README.md says (it goes stale when either changes)."""
    import json
    import re
    from pathlib import Path

    from ml.examples import normalize_text, record_checks, record_to_pair
    from schemas.checks import dump_checks

    folder = Path(__file__).parents[2] / "data" / "sample"
    rows = []
    for line in (folder / "ferrolink_faq.jsonl").read_text().splitlines():
        record = json.loads(line)
        try:
            question, answer = record_to_pair(record)
        except ValueError:
            continue
        if answer.strip():
            rows.append((normalize_text(question), normalize_text(answer), record_checks(record)))
    assert rows and all(checks for _, _, checks in rows)
    assert all(not c["derived"] for _, _, checks in rows for c in checks)
    assert all(judge(answer, parse_checks(checks)).right for _, answer, checks in rows)

    common = common_terms([answer for _, answer, _ in rows])

    def plain(checks):
        return [{k: v for k, v in c.items() if k != "derived"} for c in checks]

    kept = sum(plain(dump_checks(derive_checks(q, a, common))) == plain(checks) for q, a, checks in rows)
    readme = (folder / "README.md").read_text()
    assert f"There are {len(rows)} such rows" in readme
    assert re.search(rf"\*\*Kept exactly as derived\*\*: {kept} rows", readme)
    assert re.search(rf"\*\*Corrected\*\*: {len(rows) - kept} rows", readme)
