"""One input dataclass per workflow and activity, and their results (Temporal's default JSON converter).

Recorded histories must keep decoding: a field added to a workflow's input or to an activity's result
gets a default, and a renamed one keeps a default too (the old name is ignored when an old history is read).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

LoraTargets = Literal["attention", "all_linear"]  # the layers that carry LoRA weights (ml.trainer.LORA_TARGETS)
LORA_TARGET_CHOICES: tuple[str, ...] = get_args(LoraTargets)


@dataclass
class Hyperparameters:
    """LoRA training settings, the trainer's one config object; a task's overrides on top of these defaults."""

    learning_rate: float = 2e-4
    epochs: int = 2
    batch_size: int = 8
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    # which linear layers carry LoRA weights (ml.trainer.LORA_TARGETS): the attention projections, or every linear
    # layer of the decoder (attention and MLP)
    lora_targets: str = "attention"
    max_seq_length: int = 256
    max_steps: int | None = None
    seed: int = 42
    # the yes/no rows of the rarer answer get more copies, until training sees "Yes" and "No" equally often
    # (ml.polarity_balance; as scikit-learn's class_weight="balanced")
    balance_yes_no: bool = False

    def rows_per_iteration(self) -> int | None:
        """The most training rows an iteration reaches (`max_steps` batches); None: all of them, `epochs` times."""
        return self.max_steps * self.batch_size if self.max_steps else None

    def validated(self) -> Hyperparameters:
        """Itself, or ValueError naming every value training cannot use."""
        problems = [
            f"{name} must be {rule}"
            for name, ok, rule in (
                ("learning_rate", self.learning_rate > 0, "> 0"),
                ("epochs", self.epochs >= 1, ">= 1"),
                ("batch_size", self.batch_size >= 1, ">= 1"),
                ("lora_r", self.lora_r >= 1, ">= 1"),
                ("lora_alpha", self.lora_alpha > 0, "> 0"),
                ("lora_dropout", 0 <= self.lora_dropout < 1, "in [0, 1)"),
                ("lora_targets", self.lora_targets in LORA_TARGET_CHOICES, f"one of {list(LORA_TARGET_CHOICES)}"),
                ("max_seq_length", self.max_seq_length >= 16, ">= 16"),
                ("max_steps", self.max_steps is None or self.max_steps >= 1, ">= 1 or null"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("bad hyperparameters: " + "; ".join(problems))
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ActivityTimeouts:
    """Per-phase limits, chosen by the API from settings so workflow code stays free of configuration reads."""

    optimize_seconds: int = 900
    train_seconds: int = 6 * 3600
    evaluate_seconds: int = 3600
    heartbeat_seconds: int = 60
    max_attempts: int = 3
    retry_initial_seconds: float = 1.0


@dataclass
class IterationRecord:
    """What the loop remembers of a finished iteration."""

    iteration: int
    dataset_id: str
    adapter_key: str
    evaluation_key: str
    test_score: float
    feedback_score: float
    grade: str
    train_steps: int
    resumed_from_step: int
    knowledge_base_version: int | None = None  # the index version its passages came from
    test_accuracy: float | None = (
        None  # share of right answers by fact checks (None: no checks, or recorded before them)
    )
    feedback_accuracy: float | None = None


@dataclass
class LoopState:
    """Carried from one iteration to the next, and across continue-as-new: everything the next iteration needs from the
    earlier ones."""

    iteration: int = 1
    splits_key: str | None = None
    baseline_key: str | None = None
    baseline_test_score: float | None = None
    history: list[IterationRecord] = field(default_factory=list)
    pause_requested: bool = False  # a pause signalled just before continue-as-new still takes effect


@dataclass
class FineTuningInput:
    task_id: str
    mode: str  # STANDARD | CONTINUOUS
    model_name: str
    dataset_id: str
    org_id: str = (
        ""  # the task's organization (a default only so histories recorded before the rename from `owner` decode)
    )
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    max_iterations: int = 1
    performance_threshold: float | None = None
    targeting: bool = True  # False: plain re-training on the cleaned data (the loop ablation)
    timeouts: ActivityTimeouts = field(default_factory=ActivityTimeouts)
    state: LoopState = field(default_factory=LoopState)
    # continue-as-new after this many iterations in one run (or earlier, when the server suggests it); last, with a
    # default, so earlier callers and recorded histories still decode
    iterations_per_run: int = 10
    knowledge_base_id: str | None = None  # passages for training prompts; evaluation closed book and with retrieval
    retrieval_top_k: int = 3
    oracle_fraction: float = 0.8  # share of training prompts whose passages include the chunk that holds the answer
    context_statements: int | None = None  # each prompt's passages cut to this many statements (None: whole chunks)
    targeting_source: str = (
        "bad_cases"  # with a knowledge base: generate from bad cases' chunks, or (ablation) random ones
    )
    # an incremental task: it continues its parent's final adapter, on its parent's splits (state.splits_key), and its
    # first evaluation compares with the parent's last one
    parent_task_id: str | None = None
    init_adapter_key: str | None = None
    parent_evaluation_key: str | None = None
    # the dataset version the task pinned when it was made (None: a task made before dataset versions reads the
    # dataset's file)
    dataset_version: int | None = None
    # a feedback round: the corrected answers (a dataset, at a version) it trains on besides its parent's training split
    corrections_dataset_id: str | None = None
    corrections_dataset_version: int | None = None


@dataclass
class IterationScores:
    """A finished iteration's scores, as the `progress` query shows them."""

    iteration: int
    test: float
    feedback: float
    grade: str
    test_fact_accuracy: float | None = None  # share of right answers by fact checks (None: no checks)
    feedback_fact_accuracy: float | None = None


@dataclass
class TaskProgress:
    """The answer of FineTuningWorkflow's `progress` query: where the task is, from the workflow's own state."""

    status: str
    phase: str | None  # the running phase; None while SUSPENDED
    suspended_from: str | None
    iteration: int
    max_iterations: int
    pause_requested: bool
    baseline_test_score: float | None = None
    scores: list[IterationScores] = field(default_factory=list)
    error: str | None = None


@dataclass
class FineTuningResult:
    task_id: str
    status: str
    iterations: list[IterationRecord]
    report_key: str | None
    stop_reason: str


@dataclass
class OptimizeInput:
    task_id: str
    org_id: str
    iteration: int
    dataset_id: str  # the uploaded dataset
    splits_key: str | None  # fixed splits of the task, None on the first iteration
    previous_evaluation_key: str | None
    targeting: bool = True
    knowledge_base_id: str | None = None
    retrieval_top_k: int = 3
    oracle_fraction: float = 0.8
    model_name: str = "smollm2-135m-instruct"  # writes the questions of grounded targeting
    targeting_source: str = "bad_cases"  # bad_cases | random_chunks (the ablation's control)
    dataset_version: int | None = None  # the version of `dataset_id` the task pinned (None: the dataset's file)
    context_statements: int | None = None  # each prompt's passages cut to this many statements (None: whole chunks)
    # a feedback round: a dataset of corrected answers, at this version, whose rows all join the training split
    corrections_dataset_id: str | None = None
    corrections_dataset_version: int | None = None
    # the most training rows an iteration reaches (None: all): a round that must teach some examples (a feedback
    # round's corrections, a knowledge update's changed facts) fits its training set to it, so that each is trained on
    rows_per_iteration: int | None = None


@dataclass
class OptimizeResult:
    dataset_id: str  # the new optimized dataset row
    train_key: str
    splits_key: str
    log: dict[str, Any]
    contexts_key: str | None = None  # the held-out examples' retrieved passages (schemas.reports.RetrievedContexts)
    knowledge_base_version: int | None = None


@dataclass
class TrainInput:
    task_id: str
    org_id: str  # the task's organization (logs, traces); every key it touches is under the task's id
    iteration: int
    model_name: str
    train_key: str
    hyperparameters: Hyperparameters
    init_adapter_key: str | None  # previous iteration's adapter (incremental training)


@dataclass
class TrainResult:
    adapter_key: str
    steps: int
    total_steps: int
    resumed_from_step: int
    final_loss: float
    useful_tokens: int
    seconds: float
    tokens_per_second: float
    metrics_key: str


@dataclass
class EvaluateInput:
    task_id: str
    org_id: str  # the task's organization (logs, traces)
    iteration: int
    model_name: str
    adapter_key: str
    splits_key: str
    train_key: str
    baseline_key: str | None
    previous_evaluation_key: str | None
    contexts_key: str | None = None  # with a knowledge base: evaluate with these passages too (rag mode)
    max_seq_length: int = 256  # for the training-split losses, as long as training's
    previous_is_parent: bool = (
        False  # the previous evaluation is the parent task's last (an incremental task's first iteration)
    )


@dataclass
class EvaluateResult:
    evaluation_key: str
    baseline_key: str
    test_score: float
    feedback_score: float
    baseline_test_score: float
    grade: str
    bad_cases: int
    test_accuracy: float | None = None  # shares of right answers by fact checks (None without checks)
    feedback_accuracy: float | None = None
    baseline_test_accuracy: float | None = None


@dataclass
class RecordProgressInput:
    """One transition of the database projection: the task's status and, optionally, an execution row."""

    task_id: str
    status: str
    iteration: int
    suspended_from: str | None = None
    phase_event: str | None = None  # "started" | "finished" | None
    phase: str | None = None
    input_dataset_id: str | None = None
    output_dataset_id: str | None = None
    adapter_key: str | None = None
    evaluation_key: str | None = None
    score: float | None = None
    metrics: dict[str, Any] | None = None
    baseline_score: float | None = None
    report_key: str | None = None
    error: str | None = None
    org_id: str | None = None  # the task's organization (for its logs and traces; histories before it have none)


@dataclass
class CompensateInput:
    task_id: str
    iteration: int | None  # the unfinished iteration whose artifacts are removed; None if every iteration finished
    final_status: str  # CANCELLED | FAILED
    error: str | None = None
    org_id: str | None = None


@dataclass
class CompensateResult:
    deleted_objects: int
    deleted_datasets: list[str]


@dataclass
class ReportInput:
    task_id: str
    mode: str
    model_name: str
    stop_reason: str
    baseline_key: str
    iterations: list[IterationRecord]
    org_id: str | None = None
    # the iteration the task keeps (core.iteration_choice) and why; None: its last (runs before that choice)
    final_iteration: int | None = None
    final_because: str | None = None


@dataclass
class ReportResult:
    report_key: str
    markdown_key: str
    plot_key: str | None


# ---------------------------------------------------------------- knowledge bases


@dataclass
class DocumentsChanged:
    """Signal to a knowledge base's ingestion workflow: these documents were added, replaced or deleted."""

    document_ids: list[str] = field(default_factory=list)


@dataclass
class IngestionInput:
    knowledge_base_id: str
    org_id: str
    status: str  # the knowledge base's status when this run starts
    settle_seconds: float = 2.0  # a build starts once changes have paused this long
    idle_seconds: int = 600  # with nothing to do for this long, the run ends (the next change starts a new one)
    builds_per_run: int = 20  # then continue-as-new, carrying what is pending
    build_seconds: int = 3600
    regenerate_seconds: int = 3600  # generating again the rows of generated datasets that a build's changes touch
    heartbeat_seconds: int = 60
    max_attempts: int = 3
    retry_initial_seconds: float = 1.0
    # document ids changed and not yet built, carried across continue-as-new
    pending: list[str] = field(default_factory=list)


@dataclass
class IngestionResult:
    knowledge_base_id: str
    builds: int
    version: int
    status: str


@dataclass
class BuildKnowledgeIndexInput:
    knowledge_base_id: str
    org_id: str


@dataclass
class BuildKnowledgeIndexResult:
    version: int
    changed: bool  # False: the documents were already indexed as they are, the version stayed
    document_count: int  # documents in the index
    chunk_count: int
    embedded_chunks: int  # chunks embedded by this build (the rest were reused)
    failed_documents: int
    index_kind: str  # flat | hnsw
    seconds: dict[str, float] = field(default_factory=dict)
    # documents the previous version held at another version: their new text may contradict dataset rows
    replaced_documents: list[str] = field(default_factory=list)


@dataclass
class MarkStaleRowsInput:
    """The rows of the datasets grounding on the knowledge base that its new version's replaced documents contradict
    (compared with the version before)."""

    knowledge_base_id: str
    org_id: str
    version: int
    document_ids: list[str]


@dataclass
class MarkStaleRowsResult:
    rows: int  # rows newly recorded stale
    datasets: list[str]  # the datasets that got a version marking them


@dataclass
class RegenerateRowsInput:
    """The rows of the datasets generated from the knowledge base that were written from chunks its new version's
    replaced documents changed: generated again from the changed chunks (services.regeneration)."""

    knowledge_base_id: str
    org_id: str
    version: int
    document_ids: list[str]


@dataclass
class RegenerateRowsResult:
    removed: int  # rows written from chunks that changed, removed
    added: int  # rows generated from the chunks that changed
    datasets: list[str]  # the datasets that got a regeneration version


@dataclass
class IngestionProgress:
    """The answer of KnowledgeIngestionWorkflow's `progress` query."""

    status: str
    pending_documents: list[str]
    builds: int
    version: int
    last_build: BuildKnowledgeIndexResult | None = None


@dataclass
class RecordKnowledgeBaseInput:
    """One move of a knowledge base's status in the database projection."""

    knowledge_base_id: str
    status: str
    error: str | None = None


# ---------------------------------------------------------------- datasets generated from a knowledge base


@dataclass
class GenerationInput:
    """A dataset generated from a knowledge base's current index: its own workflow, `gen-<dataset id>`."""

    dataset_id: str
    org_id: str
    knowledge_base_id: str
    model_name: str = "smollm2-135m-instruct"  # the local model that writes questions (generator "local")
    questions_per_chunk: int = 2
    generator: str = "local"  # local | teacher
    generate_seconds: int = 3600
    heartbeat_seconds: int = 60
    max_attempts: int = 3
    retry_initial_seconds: float = 1.0


@dataclass
class GenerateDatasetInput:
    dataset_id: str
    org_id: str
    knowledge_base_id: str
    model_name: str
    questions_per_chunk: int
    generator: str


@dataclass
class GenerateDatasetResult:
    examples: int
    candidates: int
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> how many candidates validation refused for it
    accepted_by_method: dict[str, int] = field(default_factory=dict)
    knowledge_base_version: int = 0


@dataclass
class RecordDatasetInput:
    """One move of a generated dataset's status in the database projection."""

    dataset_id: str
    status: str
    error: str | None = None


# ---------------------------------------------------------------- incremental re-training


@dataclass
class KnowledgeChanged:
    """Signal to a task's retraining workflow: its knowledge base has a new index version."""

    version: int


@dataclass
class RetrainInput:
    """Start an incremental task from `task_id` once its knowledge base has stopped changing and the task has ended."""

    task_id: str
    org_id: str
    knowledge_base_id: str
    quiet_seconds: float = 60.0
    poll_seconds: float = 30.0
    version: int = 0  # the newest version signalled


@dataclass
class RetrainPending:
    """The answer of RetrainWorkflow's `pending` query: the newest version signalled, and how many changes so far."""

    version: int
    changes: int


@dataclass
class RetrainResult:
    task_id: str
    incremental_task_id: str | None
    knowledge_base_version: int
    reason: str


@dataclass
class NotifyFollowersInput:
    knowledge_base_id: str
    org_id: str
    version: int


@dataclass
class TaskStateInput:
    task_id: str


@dataclass
class TaskStateResult:
    status: str
    child_task_id: str | None  # an incremental task already started from it
    knowledge_base_version: int | None = None  # the newest knowledge-base version it grounded on


@dataclass
class StartIncrementalInput:
    parent_task_id: str
    knowledge_base_version: int


# ---------------------------------------------------------------- the model registry


@dataclass
class RegisterFinalAdapterInput:
    """A finished task's kept iteration (its best on the feedback split; its last before that choice) becomes the next
    version of its registered model."""

    task_id: str
    iteration: int
    org_id: str | None = None


@dataclass
class RegisterFinalAdapterResult:
    model_name: str | None
    version: int | None
    error: str | None = None  # why it could not be registered (the task stays COMPLETED; the API can register it later)
    # gates asked to put an incremental task's version where its parent's is
    gate_ids: list[str] = field(default_factory=list)


@dataclass
class GateTestSet:
    """One locked test split the gate asks every model, with the passages its questions were evaluated with (rag)."""

    name: str
    splits_key: str
    contexts_key: str | None = None
    # the dataset the split was made from: its questions follow the dataset's head (rows it excludes, such as stale
    # ones, leave; corrected answers are taken)
    dataset_id: str | None = None


@dataclass
class GateAdapter:
    version: int
    adapter_key: str


@dataclass
class PromotionGateInput:
    gate_id: str
    org_id: str
    base_model: str
    candidate: GateAdapter
    current: GateAdapter | None  # None: nothing is behind the alias yet, the base model is the one to beat
    test_sets: list[GateTestSet]
    mode: str  # closed_book | rag: the candidate's serving mode
    margin: float
    knowledge_base_id: str | None = None  # the candidate's: passages for a test set that has none, in rag mode
    retrieval_top_k: int = 3
    context_statements: int | None = None  # the candidate's: those passages cut to this many statements
    timeouts: ActivityTimeouts = field(default_factory=ActivityTimeouts)
    significance: float = (
        0.05  # of the paired right/wrong comparisons (gates recorded before them decided by the margin alone)
    )
    # the runs of the suites the alias requires, against the candidate (gates recorded before suites ran none)
    suite_run_ids: list[str] = field(default_factory=list)


@dataclass
class GateEvaluateInput:
    gate_id: str
    org_id: str
    base_model: str
    candidate: GateAdapter
    current: GateAdapter | None
    test_sets: list[GateTestSet]
    mode: str
    margin: float
    knowledge_base_id: str | None = None
    retrieval_top_k: int = 3
    significance: float = 0.05
    context_statements: int | None = None


@dataclass
class GateEvaluateResult:
    figures: dict[str, Any]  # ml.promotion.figures


@dataclass
class ConcludeGateInput:
    gate_id: str
    figures: dict[str, Any]


@dataclass
class ConcludeGateResult:
    status: str  # PROMOTED | REFUSED | INCONCLUSIVE
    reason: str


@dataclass
class RecordGateInput:
    gate_id: str
    status: str
    error: str | None = None


@dataclass
class RetentionInput:
    """One pass of the retention workflow (its schedule starts one every `retention_interval_hours`)."""

    reason: str = "scheduled"


@dataclass
class PruneExpiredInput:
    now: str  # ISO 8601, the workflow's time: what is older than each organization's limit before it is pruned


@dataclass
class PrunedCounts:
    org_id: str
    qa_entries: int
    task_events: int


@dataclass
class RetentionResult:
    pruned: list[PrunedCounts]


# ---------------------------------------------------------------- scenario suites


@dataclass
class SuiteRunInput:
    """A SuiteRunWorkflow's: the run (a RUNNING row naming the suite version and the model version) to answer."""

    run_id: str
    timeouts: ActivityTimeouts = field(default_factory=ActivityTimeouts)


@dataclass
class RunSuiteInput:
    run_id: str


@dataclass
class RunSuiteResult:
    passed: int
    failed: int
    total: int


@dataclass
class FailSuiteRunInput:
    run_id: str
    error: str


# ---------------------------------------------------------------- releases


@dataclass
class ReleaseInput:
    """A release's workflow (id `release-<release id>`): the candidate's weight at each step, and each step's waits."""

    release_id: str
    steps: list[int]
    bake_seconds: float
    max_wait_seconds: float  # past this without enough requests per arm, the release pauses
    poll_seconds: float = 5.0  # how often a baked step counts its requests again
    # runs (RUNNING rows) of the blocking suites the alias requires, against the candidate, before any traffic
    suite_run_ids: list[str] = field(default_factory=list)
    suite_timeouts: ActivityTimeouts = field(default_factory=ActivityTimeouts)


@dataclass
class ReleaseControl:
    """An update of a running release: promote (skip to the end), pause, resume or abort, by whom and why."""

    action: str
    actor_user_id: str | None = None
    actor_key_id: str | None = None
    reason: str | None = None


@dataclass
class ReleaseResult:
    status: str
    reason: str


@dataclass
class ReleaseDecisionInput:
    """One decision of a release, made once: `key` names it within the release (a retry finds it made)."""

    release_id: str
    key: str
    kind: str
    reason: str
    status: str | None = None  # None: unchanged
    weight: int | None = None  # the candidate's weight after it; None: unchanged
    step_index: int | None = None
    figures: dict[str, Any] | None = None
    actor_user_id: str | None = None  # None: the release's creator
    actor_key_id: str | None = None
    guard_alias: bool = False  # stop the release instead if the alias no longer points at its current version
    promote: bool = False  # move the alias to the candidate (guarded too)


@dataclass
class ReleaseDecisionResult:
    status: str
    candidate_weight: int
    reason: str
    at: str  # when it was made (ISO 8601, UTC): a step's analysis counts the requests from then


@dataclass
class JudgeReleaseSuitesInput:
    release_id: str


@dataclass
class AnalyseReleaseInput:
    release_id: str
    step_index: int
    since: str  # ISO 8601: the requests answered from this time on


@dataclass
class ShadowReleaseInput:
    """A step's real prompts that ask what a blocking case asks, asked of both versions in the shadow."""

    release_id: str
    step_index: int
    since: str  # ISO 8601: the prompts answered from this time on


@dataclass
class ShadowReleaseResult:
    passed: bool
    reason: str
    figures: dict[str, Any]


@dataclass
class AnalyseReleaseResult:
    enough: bool  # every arm that gets traffic has its minimum number of requests
    passed: bool  # (when enough) the candidate is within every threshold
    reason: str
    figures: dict[str, Any]
    alias_moved: bool = False  # the alias no longer points at the release's current version
