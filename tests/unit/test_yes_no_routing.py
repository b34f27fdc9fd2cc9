"""bench/yes_no_routing: polar questions told by their first word, and the answers combined per question."""

from __future__ import annotations

from bench.yes_no_routing import is_polar, routed


def test_a_question_is_polar_when_it_opens_with_an_auxiliary_verb():
    assert is_polar("Does the FerroLink server run on Windows?")
    assert is_polar("can I keep daily snapshots longer than 30 days?")
    assert not is_polar("Which port serves the REST API?")
    assert not is_polar("My pairing code stopped working; is it expired?")
    assert not is_polar("")


def test_polar_questions_take_the_untuned_models_verdict_and_the_others_the_tuned_ones():
    ids = {"p1", "p2", "v1", "v2"}
    assert routed(tuned_right={"p1", "v1"}, untuned_right={"p2", "v2"}, polar={"p1", "p2"}, ids=ids) == {"p2", "v1"}
