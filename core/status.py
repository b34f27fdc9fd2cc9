"""The task state machine: statuses and the one table of allowed transitions."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    OPTIMIZING = "OPTIMIZING"
    TRAINING = "TRAINING"
    EVALUATING = "EVALUATING"
    LOOPING = "LOOPING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SUSPENDED = "SUSPENDED"


class TaskMode(StrEnum):
    STANDARD = "STANDARD"
    CONTINUOUS = "CONTINUOUS"


S = TaskStatus
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.PENDING: frozenset({S.OPTIMIZING, S.CANCELLED}),
    S.OPTIMIZING: frozenset({S.TRAINING, S.FAILED, S.CANCELLED, S.SUSPENDED}),
    S.TRAINING: frozenset({S.EVALUATING, S.FAILED, S.CANCELLED, S.SUSPENDED}),
    S.EVALUATING: frozenset({S.COMPLETED, S.LOOPING, S.FAILED, S.CANCELLED, S.SUSPENDED}),
    S.LOOPING: frozenset({S.OPTIMIZING, S.COMPLETED, S.CANCELLED}),
    # A suspended task goes back to the phase it left; `resume_target` checks which.
    S.SUSPENDED: frozenset({S.OPTIMIZING, S.TRAINING, S.EVALUATING, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
del S

TERMINAL_STATUSES = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
ACTIVE_PHASES = frozenset({TaskStatus.OPTIMIZING, TaskStatus.TRAINING, TaskStatus.EVALUATING})


class IllegalTransition(ValueError):
    """A status change the transition table does not allow."""

    def __init__(self, current: TaskStatus, target: TaskStatus):
        super().__init__(f"cannot go from {current} to {target}")
        self.current = current
        self.target = target


def can_transition(current: TaskStatus, target: TaskStatus, *, suspended_from: TaskStatus | None = None) -> bool:
    """Whether `current -> target` is allowed; leaving SUSPENDED is allowed only back to `suspended_from`."""
    if target not in TRANSITIONS[current]:
        return False
    if current is TaskStatus.SUSPENDED and target is not TaskStatus.CANCELLED:
        return target == suspended_from
    return True


def check_transition(current: TaskStatus, target: TaskStatus, *, suspended_from: TaskStatus | None = None) -> TaskStatus:
    """Return `target` if the move is allowed, else raise `IllegalTransition`."""
    if not can_transition(current, target, suspended_from=suspended_from):
        raise IllegalTransition(current, target)
    return target
