"""Counterfactual twins (ml.counterfactual_values): the row's own question, another value in its passages, answer and
checks, only where its passages state the value; the twin's answer passes its own checks and fails the original's."""

from __future__ import annotations

import random

from facts.judge import judge
from ml.counterfactual_values import ORIGIN, counterfactual_twin, other_value, with_counterfactual_twins
from ml.examples import Example
from schemas.checks import parse_checks

PORT = Example(
    "Which port does the web console use?",
    "The web console listens on TCP port 7410.",
    context=["The web console is served over HTTPS on TCP port 7410.", "File synchronization uses TCP port 7411."],
    checks=[{"type": "number", "value": 7410}, {"type": "not_contains", "values": ["7411"]}],
)
PRICE = Example(
    "What does the FerroBox F4 cost?",
    "The FerroBox F4 costs $899.",
    context=["The FerroBox F2 costs $499 and the FerroBox F4 costs $899."],
    checks=[{"type": "number", "value": 899}],
)


def test_a_twin_states_another_value_in_its_passages_answer_and_checks():
    twin = counterfactual_twin(PORT, random.Random(0))
    assert twin is not None and twin.question == PORT.question and twin.origin == ORIGIN
    new = str(int(twin.checks[0]["value"]))
    assert new != "7410" and len(new) == 4
    assert twin.answer == f"The web console listens on TCP port {new}."
    assert twin.context == [f"The web console is served over HTTPS on TCP port {new}.", PORT.context[1]]
    assert judge(twin.answer, parse_checks(twin.checks)).right
    assert not judge(PORT.answer, parse_checks(twin.checks)).right  # recalling the old value is now wrong
    assert twin.id != PORT.id and twin.lineage[-1]["parent_id"] == PORT.id
    price = counterfactual_twin(PRICE, random.Random(0))
    assert price is not None and price.answer.startswith("The FerroBox F4 costs $") and "$899" not in price.answer
    assert "$499" in price.context[0]  # the other price stays


def test_no_twin_without_a_value_its_passages_state():
    closed_book = Example(PORT.question, PORT.answer, checks=PORT.checks)
    unsupported = Example(PORT.question, PORT.answer, context=["Ports are listed in the guide."], checks=PORT.checks)
    polar = Example("Is it on 7410?", "Yes.", context=PORT.context, checks=[{"type": "polarity", "value": "yes"}])
    fraction = Example("Version?", "It is 4.5.", context=["Version 4.5."], checks=[{"type": "number", "value": 4.5}])
    for example in (closed_book, unsupported, polar, fraction):
        assert counterfactual_twin(example, random.Random(0)) is None
    assert [e.origin for e in with_counterfactual_twins([closed_book, PORT, PRICE])] == [
        "source",
        "source",
        ORIGIN,
        "source",
        ORIGIN,
    ]


def test_other_values_keep_their_size():
    rng = random.Random(1)
    for value in (7410, 899, 10, 3):
        others = {other_value(value, rng) for _ in range(50)}
        assert all(value < o <= value * 1.5 + 5 for o in others)
