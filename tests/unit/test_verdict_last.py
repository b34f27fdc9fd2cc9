"""Yes/no answers written fact first, verdict last, and read back by the judge with the row's stance."""

from __future__ import annotations

from facts.judge import stance
from ml.examples import Example
from ml.verdict_last import verdict_last, with_verdicts_last


def test_the_leading_verdict_moves_to_the_end():
    assert verdict_last("No, single sign-on is available only with an Enterprise license.", "no") == (
        "single sign-on is available only with an Enterprise license, so no."
    )
    assert verdict_last("Yes - raise the daily value in ferro.toml.", "yes") == (
        "raise the daily value in ferro.toml, so yes."
    )
    # a command keeps its case; an answer without a verdict gets its row's; a bare verdict stays
    assert verdict_last("Yes, ferro sync --once runs one pass.", "yes") == "ferro sync --once runs one pass, so yes."
    assert verdict_last("The free edition is limited to 3 users.", "no") == (
        "The free edition is limited to 3 users, so no."
    )
    assert verdict_last("No.", "no") == "No."


def test_only_yes_no_rows_are_rewritten_and_the_judge_reads_their_stance():
    polar = Example(
        "Can I use SSO on the Pro plan?",
        "No, SSO needs an Enterprise license.",
        checks=[{"type": "polarity", "value": "no"}],
    )
    value = Example("Which port?", "Port 7410.", checks=[{"type": "number", "value": 7410}])
    rewritten, same = with_verdicts_last([polar, value])
    assert rewritten.answer == "SSO needs an Enterprise license, so no." and stance(rewritten.answer) == "no"
    assert same == value
