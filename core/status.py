"""The state machines: a task's statuses and the one table of its allowed transitions; a knowledge base's, a dataset's,
a promotion gate's, a suite run's and a release's likewise."""

from __future__ import annotations

from enum import Enum, StrEnum


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

    def __init__(self, current: Enum, target: Enum):
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


def check_transition(
    current: TaskStatus, target: TaskStatus, *, suspended_from: TaskStatus | None = None
) -> TaskStatus:
    """Return `target` if the move is allowed, else raise `IllegalTransition`."""
    if not can_transition(current, target, suspended_from=suspended_from):
        raise IllegalTransition(current, target)
    return target


# ---------------------------------------------------------------- knowledge bases


class KnowledgeBaseStatus(StrEnum):
    CREATED = "CREATED"  # no document indexed yet
    BUILDING = "BUILDING"  # a build of a new index version is running
    READY = "READY"  # the index holds every document the knowledge base holds
    REBUILD_REQUIRED = "REBUILD_REQUIRED"  # documents changed since the index was built; a build is queued
    BUILD_FAILED = "BUILD_FAILED"  # the last build failed; the previous version (if any) still answers searches


K = KnowledgeBaseStatus
KNOWLEDGE_BASE_TRANSITIONS: dict[KnowledgeBaseStatus, frozenset[KnowledgeBaseStatus]] = {
    K.CREATED: frozenset({K.REBUILD_REQUIRED}),
    K.REBUILD_REQUIRED: frozenset({K.BUILDING}),
    K.BUILDING: frozenset({K.READY, K.REBUILD_REQUIRED, K.BUILD_FAILED}),
    K.READY: frozenset({K.REBUILD_REQUIRED}),
    K.BUILD_FAILED: frozenset({K.REBUILD_REQUIRED}),
}
del K


def check_knowledge_base_transition(
    current: KnowledgeBaseStatus, target: KnowledgeBaseStatus, *, suspended_from: KnowledgeBaseStatus | None = None
) -> KnowledgeBaseStatus:
    """Return `target` if a knowledge base may move there from `current`, else raise `IllegalTransition`."""
    if target not in KNOWLEDGE_BASE_TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


# ---------------------------------------------------------------- datasets


class DatasetStatus(StrEnum):
    READY = "READY"  # uploaded, or generated and validated
    GENERATING = "GENERATING"  # being generated from a knowledge base
    FAILED = "FAILED"  # its generation failed (the error says why)


class DatasetVersionKind(StrEnum):
    UPLOAD = "upload"  # a file the user sent: the dataset's first, or a new version of it
    ANNOTATION = "annotation"  # a user's edits of the rows of the version before
    RECORDED = "recorded"  # version 1 of a dataset made before versions (or written by a workflow), recorded later
    REGENERATION = "regeneration"  # rows generated again from the knowledge base's changed chunks, by the system


DATASET_TRANSITIONS: dict[DatasetStatus, frozenset[DatasetStatus]] = {
    DatasetStatus.GENERATING: frozenset({DatasetStatus.READY, DatasetStatus.FAILED}),
    DatasetStatus.READY: frozenset(),
    DatasetStatus.FAILED: frozenset(),
}


def check_dataset_transition(
    current: DatasetStatus, target: DatasetStatus, *, suspended_from: DatasetStatus | None = None
) -> DatasetStatus:
    if target not in DATASET_TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


# ---------------------------------------------------------------- promotion gates


class GateStatus(StrEnum):
    EVALUATING = (
        "EVALUATING"  # the candidate, the alias's current version and the base model answer the same test questions
    )
    # the candidate answered significantly more questions right than both (or was forced): the alias points at it
    PROMOTED = "PROMOTED"
    REFUSED = "REFUSED"  # it did not, or the alias moved meanwhile: nothing changed; the figures say why
    INCONCLUSIVE = (
        "INCONCLUSIVE"  # better, but not significantly, on too few questions: not enough evidence, nothing changed
    )
    FAILED = "FAILED"  # the evaluation could not run (the error says why): nothing changed


GATE_TRANSITIONS: dict[GateStatus, frozenset[GateStatus]] = {
    GateStatus.EVALUATING: frozenset(
        {GateStatus.PROMOTED, GateStatus.REFUSED, GateStatus.INCONCLUSIVE, GateStatus.FAILED}
    ),
    GateStatus.PROMOTED: frozenset(),
    GateStatus.REFUSED: frozenset(),
    GateStatus.INCONCLUSIVE: frozenset(),
    GateStatus.FAILED: frozenset(),
}


def check_gate_transition(
    current: GateStatus, target: GateStatus, *, suspended_from: GateStatus | None = None
) -> GateStatus:
    if target not in GATE_TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


# ---------------------------------------------------------------- scenario suites


class SuiteRunStatus(StrEnum):
    RUNNING = "RUNNING"  # the model answers the suite's cases
    COMPLETED = "COMPLETED"  # every case has its answer and verdict (passed or not)
    FAILED = "FAILED"  # the run could not answer (the error says why)


# ---------------------------------------------------------------- releases


class ReleaseStatus(StrEnum):
    PENDING = "PENDING"  # recorded; its workflow has not started the first step yet
    RUNNING = "RUNNING"  # serving splits the alias's traffic by the step's candidate weight
    PAUSED = "PAUSED"  # too little data, or paused by someone: the alias serves its current version only
    PROMOTED = "PROMOTED"  # the alias points at the candidate
    ROLLED_BACK = "ROLLED_BACK"  # an analysis failed: candidate weight 0, the alias unchanged
    ABORTED = "ABORTED"  # stopped by someone, or the alias moved under it: candidate weight 0, the alias unchanged


R = ReleaseStatus
RELEASE_TRANSITIONS: dict[ReleaseStatus, frozenset[ReleaseStatus]] = {
    R.PENDING: frozenset({R.RUNNING, R.ABORTED}),
    R.RUNNING: frozenset({R.PAUSED, R.PROMOTED, R.ROLLED_BACK, R.ABORTED}),
    R.PAUSED: frozenset({R.RUNNING, R.PROMOTED, R.ABORTED}),
    R.PROMOTED: frozenset(),
    R.ROLLED_BACK: frozenset(),
    R.ABORTED: frozenset(),
}
del R

ACTIVE_RELEASE_STATUSES = frozenset(s for s, targets in RELEASE_TRANSITIONS.items() if targets)

# The controls of a release: the statuses each one is accepted in, and the status it leads to.
RELEASE_CONTROLS: dict[str, tuple[frozenset[ReleaseStatus], ReleaseStatus]] = {
    "promote": (frozenset({ReleaseStatus.RUNNING, ReleaseStatus.PAUSED}), ReleaseStatus.PROMOTED),
    "pause": (frozenset({ReleaseStatus.RUNNING}), ReleaseStatus.PAUSED),
    "resume": (frozenset({ReleaseStatus.PAUSED}), ReleaseStatus.RUNNING),
    "abort": (ACTIVE_RELEASE_STATUSES, ReleaseStatus.ABORTED),
}


def check_release_transition(
    current: ReleaseStatus, target: ReleaseStatus, *, suspended_from: ReleaseStatus | None = None
) -> ReleaseStatus:
    """Return `target` if a release may move there from `current` (staying put is always allowed), else raise."""
    if target != current and target not in RELEASE_TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target
