"""The task state machine: every (current, target) pair against a table written out here."""

from __future__ import annotations

import itertools

import pytest

from core.status import (
    ACTIVE_PHASES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    IllegalTransition,
    TaskStatus,
    can_transition,
    check_transition,
)

# the statuses' initials, so the table below reads as one (O is OPTIMIZING, not zero)
P, O, T, E, L, C, F, X, S = (  # noqa: E741
    TaskStatus.PENDING,
    TaskStatus.OPTIMIZING,
    TaskStatus.TRAINING,
    TaskStatus.EVALUATING,
    TaskStatus.LOOPING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.SUSPENDED,
)
ALL = (P, O, T, E, L, C, F, X, S)

# Written out independently of core.status.TRANSITIONS: current -> the targets that are allowed.
# SUSPENDED is handled separately because its answer depends on `suspended_from`.
EXPECTED_ALLOWED = {
    P: {O, X},
    O: {T, F, X, S},
    T: {E, F, X, S},
    E: {C, L, F, X, S},
    L: {O, C, X},
    C: set(),
    F: set(),
    X: set(),
}


def test_there_are_exactly_nine_statuses():
    assert set(TaskStatus) == set(ALL)
    assert len(ALL) == 9
    assert set(TRANSITIONS) == set(ALL)


@pytest.mark.parametrize(("current", "target"), list(itertools.product([s for s in ALL if s is not S], ALL)))
def test_can_transition_matches_table(current, target):
    expected = target in EXPECTED_ALLOWED[current]
    assert can_transition(current, target) is expected
    # suspended_from only matters when leaving SUSPENDED
    for suspended_from in (None, O, T, E):
        assert can_transition(current, target, suspended_from=suspended_from) is expected


def _expected_from_suspended(target, suspended_from) -> bool:
    if target is X:
        return True
    return target in (O, T, E) and target is suspended_from


@pytest.mark.parametrize(("target", "suspended_from"), list(itertools.product(ALL, (None, *ALL))))
def test_leaving_suspended_only_back_to_the_phase_it_left(target, suspended_from):
    assert can_transition(S, target, suspended_from=suspended_from) is _expected_from_suspended(target, suspended_from)


def test_suspended_explicit_cases():
    assert can_transition(S, T, suspended_from=T)
    assert not can_transition(S, O, suspended_from=T)
    assert not can_transition(S, E, suspended_from=T)
    assert not can_transition(S, T)  # unknown phase: no resume
    assert can_transition(S, X)  # cancel is always possible
    assert not can_transition(S, C, suspended_from=C)  # COMPLETED is not a resume target
    assert not can_transition(S, S, suspended_from=S)


def test_full_matrix_count():
    allowed = sum(can_transition(a, b) for a in ALL for b in ALL if a is not S)
    assert allowed == 2 + 4 + 4 + 5 + 3


def test_check_transition_returns_target_when_allowed():
    assert check_transition(P, O) is O
    assert check_transition(E, L) is L
    assert check_transition(S, E, suspended_from=E) is E


@pytest.mark.parametrize(
    ("current", "target", "suspended_from"),
    [
        (P, T, None),
        (P, C, None),
        (O, E, None),
        (T, O, None),
        (E, O, None),
        (L, T, None),
        (C, O, None),
        (F, O, None),
        (X, P, None),
        (S, O, None),
        (S, O, T),
        (P, P, None),
    ],
)
def test_check_transition_raises_illegal_transition(current, target, suspended_from):
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, target, suspended_from=suspended_from)
    assert info.value.current is current
    assert info.value.target is target
    assert str(current) in str(info.value) and str(target) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_terminal_statuses():
    assert frozenset({C, F, X}) == TERMINAL_STATUSES
    for status in TERMINAL_STATUSES:
        assert not any(can_transition(status, target, suspended_from=O) for target in ALL)


def test_active_phases():
    assert frozenset({O, T, E}) == ACTIVE_PHASES


def test_status_values_are_their_names():
    for status in ALL:
        assert status.value == status.name
        assert TaskStatus(status.name) is status
