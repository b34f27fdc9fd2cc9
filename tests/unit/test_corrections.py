"""Proposed corrections of stale rows (facts.corrections): from the staleness rule's finding to the answer and checks
that take the document's change in, or no proposal where it cannot be written in."""

from __future__ import annotations

from facts.corrections import propose
from facts.judge import judge
from facts.staleness import RowFacts, stale_rows
from schemas.checks import parse_checks
from testkit.stale_documents import GUIDE, ROWS

FACTS = [RowFacts(r["id"], r["question"], r["answer"], parse_checks(r.get("checks", []))) for r in ROWS]
BY_ID = {r["id"]: r for r in ROWS}


def proposal_for(row_id: str, new_text: str):
    [stale] = [s for s in stale_rows(GUIDE, new_text, FACTS) if s.row_id == row_id]
    row = BY_ID[row_id]
    return propose(row["answer"], row["checks"], stale.old_value, stale.new_value, stale.new_sentence)


def test_a_changed_port_is_written_into_the_answer_and_its_number_check():
    proposal = proposal_for("web-port", GUIDE.replace("HTTPS on TCP port 7410.", "HTTPS on TCP port 7420."))
    assert proposal is not None
    assert proposal.answer == "Open TCP port 7420, the web console's port."
    [number] = proposal.checks
    assert (number["type"], number["value"]) == ("number", 7420)
    assert judge(proposal.answer, parse_checks(proposal.checks)).right
    assert not judge("Open TCP port 7410.", parse_checks(proposal.checks)).right


def test_a_changed_price_keeps_its_dollar_sign_and_changes_every_alternative():
    proposal = proposal_for("f2-price", GUIDE.replace("F2 costs $499", "F2 costs $549"))
    assert proposal is not None
    assert proposal.answer == "The FerroBox F2 costs $549, without drives."
    assert proposal.checks[0]["values"] == ["$549", "549 dollars"]


def test_a_flipped_yes_no_row_answers_the_opposite_with_the_new_sentence():
    new = GUIDE.replace("drives are not included.", "drives are included.")
    proposal = proposal_for("drives", new)
    assert proposal is not None
    assert proposal.answer.startswith("Yes, ")
    assert "drives are included" in proposal.answer
    assert proposal.checks == [{"type": "polarity", "value": "yes", "derived": False}]


def test_other_checks_keep_what_holds_no_old_value():
    checks = [{"type": "number", "value": 7410}, {"type": "not_contains", "values": ["7411", "7412"]}]
    proposal = propose("Open TCP port 7410.", checks, "7410", "7420", "Port 7420.")
    assert proposal is not None and proposal.checks[1]["values"] == ["7411", "7412"]


def test_a_number_inside_a_longer_number_is_not_replaced():
    proposal = propose(
        "Ports 17410 and 7410 are open.", [{"type": "number", "value": 7410}], "7410", "7420", "Port 7420."
    )
    assert proposal is not None and proposal.answer == "Ports 17410 and 7420 are open."


def test_no_proposal_where_the_change_cannot_be_written_in():
    checks = [{"type": "number", "value": 10, "unit": "minutes"}]
    # the answer states the old value in words
    assert propose("Pairing codes expire after ten minutes.", checks, "10 minutes", "15 minutes", "15 minutes.") is None
    # the sentence was dropped, or gives no value in the old one's place
    assert propose("They expire after 10 minutes.", checks, "10 minutes", None, None) is None
    assert propose("They expire after 10 minutes.", checks, "10 minutes", None, "Codes expire.") is None
    # the proposed answer would fail its own proposed checks (a check that still asks for the old value elsewhere)
    stuck = [{"type": "number", "value": 10, "unit": "minutes"}, {"type": "regex", "pattern": "\\b10\\b"}]
    assert propose("They expire after 10 minutes.", stuck, "10 minutes", "15 minutes", "15 minutes.") is None


def test_a_number_with_its_unit_changes_the_number_and_keeps_the_unit():
    proposal = propose(
        "Pairing codes expire after 10 minutes.",
        [{"type": "number", "value": 10, "unit": "minutes"}],
        "10 minutes",
        "15 minutes",
        "Pairing codes expire after 15 minutes.",
    )
    assert proposal is not None
    assert proposal.answer == "Pairing codes expire after 15 minutes."
    assert proposal.checks[0]["value"] == 15 and proposal.checks[0]["unit"] == "minutes"
