"""Rows a new document version contradicts (facts.staleness): the changed values of each rewritten or dropped sentence,
and the rows whose checks ask for one of them and concern that sentence, on FerroLink-like documents."""

from __future__ import annotations

import pytest

from facts.staleness import RowFacts, changed_sentences, describe, sentences, stale_rows, values_in
from schemas.checks import parse_checks

GUIDE = """# FerroLink product and setup guide

## Product

- The current stable release is FerroLink 4.2.1.
- Minimum server hardware is 2 CPU cores and 4 GB of RAM; 8 GB of RAM is recommended.
- The FerroBox F2 costs $499 and the FerroBox F4 costs $899; drives are not included.
- A free plan allows up to 3 users. Pro costs $8 per user per month.

## Network ports

- The web console is served over HTTPS on TCP port 7410.
- The REST API is available at /api/v2 on port 7410 as well.
- File synchronization uses TCP port 7411.
- LAN discovery uses UDP port 7413.
- Error FL-204 means a sync conflict; no changes are lost.
"""


def row(row_id: str, question: str, answer: str, *checks: dict) -> RowFacts:
    return RowFacts(row_id, question, answer, parse_checks(list(checks)))


WEB_PORT = row(
    "web-port",
    "Which TCP port should I open for the web UI?",
    "Open TCP port 7410, which is the default web console port.",
    {"type": "number", "value": 7410},
    {"type": "not_contains", "values": ["7411", "7412"]},
)
API_PORT = row(  # the same number, about another sentence
    "api-port",
    "On which port is the REST API?",
    "The REST API is at /api/v2 on port 7410.",
    {"type": "number", "value": 7410},
)
SYNC_PORT = row(
    "sync-port",
    "Which port does file sync use?",
    "File synchronization uses TCP port 7411.",
    {"type": "number", "value": 7411},
)
PRICE = row(
    "f2-price",
    "How much does the FerroBox F2 cost?",
    "The FerroBox F2 costs $499, without drives.",
    {"type": "contains_any", "values": ["$499", "499 dollars"]},
)
DRIVES = row(
    "drives",
    "Are drives included with a FerroBox?",
    "No, drives are not included.",
    {"type": "polarity", "value": "no"},
)
RAM = row(
    "ram",
    "How much RAM is recommended for the server?",
    "8 GB of RAM is recommended.",
    {"type": "number", "value": 8, "unit": "GB"},
)
USERS = row(
    "free-users",
    "How many users does the free plan allow?",
    "The free plan allows up to 3 users.",
    {"type": "number", "value": 3},
)
DISCOVERY = row(
    "discovery",
    "Which port does LAN discovery use?",
    "LAN discovery uses UDP port 7413.",
    {"type": "contains_all", "values": ["UDP", ["7413", "seven thousand four hundred thirteen"]]},
)
RELEASE = row(
    "release",
    "What is the current stable release of FerroLink?",
    "The current stable release is FerroLink 4.2.1.",
    {"type": "contains_all", "values": ["4.2.1"]},
)
ROWS = [WEB_PORT, API_PORT, SYNC_PORT, PRICE, DRIVES, RAM, USERS, DISCOVERY, RELEASE]


def stale_ids(new: str, rows: list[RowFacts] = ROWS) -> list[str]:
    return [s.row_id for s in stale_rows(GUIDE, new, rows)]


def test_sentences_are_lines_and_sentences_without_marks_or_headings_hashes():
    found = sentences(GUIDE)
    assert "FerroLink product and setup guide" in found
    assert "The current stable release is FerroLink 4.2.1." in found  # a version's dots end no sentence
    assert "A free plan allows up to 3 users." in found and "Pro costs $8 per user per month." in found
    assert not any(s.startswith(("-", "#")) for s in found)


def test_values_are_numbers_with_units_and_codes_not_versions_as_numbers():
    texts = {v.text for v in values_in("The FerroBox F2 costs $499; 8 GB of RAM; release 4.2.1; error FL-204.")}
    assert {"$499", "8 GB", "4.2.1", "FL-204", "F2"} <= texts
    assert "4.2" not in texts and "2" not in texts


def test_a_changed_port_stales_the_row_about_that_sentence_with_the_new_value_and_sentence():
    new = GUIDE.replace("HTTPS on TCP port 7410.", "HTTPS on TCP port 7420.")
    [stale] = stale_rows(GUIDE, new, ROWS)
    assert stale.row_id == "web-port"
    assert (stale.old_value, stale.new_value) == ("7410", "7420")
    assert stale.old_sentence == "The web console is served over HTTPS on TCP port 7410."
    assert stale.new_sentence == "The web console is served over HTTPS on TCP port 7420."
    assert describe(stale) == "7410 → 7420"


def test_a_row_with_the_same_number_about_another_sentence_is_not_staled():
    """7410 is also the API's port, in a sentence that did not change: the API row concerns that one."""
    new = GUIDE.replace("HTTPS on TCP port 7410.", "HTTPS on TCP port 7420.")
    assert "api-port" not in stale_ids(new)
    # and the other way round: the API's port moves, the web console's row stays
    moved = GUIDE.replace("/api/v2 on port 7410", "/api/v2 on port 7430")
    assert stale_ids(moved) == ["api-port"]


def test_a_changed_price_stales_a_contains_any_row_and_keeps_the_unit():
    new = GUIDE.replace("F2 costs $499", "F2 costs $549")
    [stale] = stale_rows(GUIDE, new, ROWS)
    assert (stale.row_id, stale.old_value, stale.new_value) == ("f2-price", "$499", "$549")


def test_a_sentence_that_changes_two_prices_pairs_each_with_the_one_in_its_place():
    f4 = row(
        "f4-price",
        "How much does the FerroBox F4 cost?",
        "The FerroBox F4 costs $899.",
        {"type": "number", "value": 899, "unit": "$"},
    )
    new = GUIDE.replace("F2 costs $499", "F2 costs $549").replace("F4 costs $899", "F4 costs $949")
    found = {s.row_id: (s.old_value, s.new_value) for s in stale_rows(GUIDE, new, [PRICE, f4])}
    assert found == {"f2-price": ("$499", "$549"), "f4-price": ("$899", "$949")}


def test_a_changed_limit_and_a_changed_amount_with_units():
    new = GUIDE.replace("up to 3 users", "up to 5 users").replace("8 GB of RAM is", "16 GB of RAM is")
    found = {s.row_id: (s.old_value, s.new_value) for s in stale_rows(GUIDE, new, ROWS)}
    assert found == {"free-users": ("3", "5"), "ram": ("8 GB", "16 GB")}


@pytest.mark.parametrize(
    "old, new",
    [
        ("drives are not included.", "drives are sold separately."),  # a rewording: the polarity row is not stale
        ("File synchronization uses TCP port 7411.", "File sync traffic uses TCP port 7411."),
        ("on TCP port 7410.", "on TCP port 7410 by default."),
        (
            "- LAN discovery uses UDP port 7413.\n",
            "- LAN discovery uses UDP port 7413.\n- Discovery can be disabled.\n",
        ),
    ],
)
def test_an_edit_that_changes_no_value_stales_nothing(old, new):
    assert old in GUIDE
    assert stale_ids(GUIDE.replace(old, new)) == []


def test_a_dropped_sentence_stales_the_rows_that_ask_for_its_values():
    new = GUIDE.replace("- LAN discovery uses UDP port 7413.\n", "")
    [stale] = stale_rows(GUIDE, new, ROWS)
    assert (stale.row_id, stale.old_value, stale.new_value, stale.new_sentence) == ("discovery", "7413", None, None)
    assert describe(stale) == "7413 removed"


def test_a_changed_identifier_stales_the_row_that_asks_for_it():
    new = GUIDE.replace("FerroLink 4.2.1.", "FerroLink 4.3.0.")
    [stale] = stale_rows(GUIDE, new, ROWS)
    assert (stale.row_id, stale.old_value, stale.new_value) == ("release", "4.2.1", "4.3.0")


def test_a_rewrite_that_still_satisfies_the_check_stales_nothing():
    """The value moved in the sentence, or a tolerance covers the new one: the check still passes on the new text."""
    tolerant = row(
        "ram-about",
        "How much RAM is recommended for the server?",
        "About 8 GB of RAM.",
        {"type": "number", "value": 8, "tolerance": 1},
    )
    new = GUIDE.replace("8 GB of RAM is recommended", "9 GB of RAM is recommended")
    assert stale_ids(new, [tolerant]) == []
    assert stale_ids(new, [RAM]) == ["ram"]


def test_changed_sentences_pair_each_removed_sentence_with_its_rewrite():
    new = GUIDE.replace("TCP port 7411", "TCP port 7421").replace(
        "- Error FL-204 means a sync conflict; no changes are lost.\n", ""
    )
    changes = {c.old: c for c in changed_sentences(GUIDE, new)}
    sync = changes["File synchronization uses TCP port 7411."]
    assert sync.new == "File synchronization uses TCP port 7421."
    assert [v.text for v in sync.removed] == ["7411"] and [v.text for v in sync.added] == ["7421"]
    dropped = changes["Error FL-204 means a sync conflict; no changes are lost."]
    assert dropped.new is None and "FL-204" in {v.text for v in dropped.removed}


def test_an_unchanged_document_stales_nothing():
    assert stale_rows(GUIDE, GUIDE, ROWS) == []


def test_a_yes_no_question_that_states_a_changed_value_is_stale_with_the_opposite_answer():
    new = GUIDE.replace("HTTPS on TCP port 7410.", "HTTPS on TCP port 7420.")
    console = row(
        "console-7410",
        "Is the web console on port 7410?",
        "Yes, on TCP port 7410.",
        {"type": "polarity", "value": "yes"},
    )
    moved = row(
        "console-7420",
        "Is the web console on port 7420?",
        "No, it is on port 7410.",
        {"type": "polarity", "value": "no"},
    )
    api = row(  # the same number, about the REST API's sentence, which did not change
        "api-7410",
        "Is the REST API on port 7410?",
        "Yes, the REST API is on port 7410.",
        {"type": "polarity", "value": "yes"},
    )
    found = {s.row_id: (s.old_value, s.new_value) for s in stale_rows(GUIDE, new, [console, moved, api, DRIVES])}
    assert found == {"console-7410": ("yes", "no"), "console-7420": ("no", "yes")}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("no changes are lost.", "changes may be lost."),
        ("drives are not included.", "drives are included."),
        ("Error FL-204 means a sync conflict; no changes", "Error FL-204 never means a sync conflict; no changes"),
    ],
)
def test_a_flipped_sentence_stales_the_yes_no_rows_about_it(old, new):
    lost = row(
        "lost",
        "I got FL-204; did I lose changes?",
        "No, FL-204 is a sync conflict.",
        {"type": "polarity", "value": "no"},
    )
    new_text = GUIDE.replace(old, new)
    found = {s.row_id: (s.old_value, s.new_value) for s in stale_rows(GUIDE, new_text, [lost, DRIVES, WEB_PORT])}
    assert found == ({"drives": ("no", "yes")} if "drives" in old else {"lost": ("no", "yes")})


def test_a_rewording_with_its_negation_moved_is_no_flip():
    """The content words change with the negation ("not included" → "sold separately")."""
    for old, new in (
        ("drives are not included.", "drives are sold separately."),
        ("no changes are lost.", "nothing is lost, not even changes."),
    ):
        assert stale_ids(GUIDE.replace(old, new), [DRIVES]) == []
