"""The evaluation report of one iteration and the report of a whole task: typed, so the evaluator that writes
them, the report builder, the API that serves them and the demo that prints them agree on every field.

Every score names the split it was measured on; the headline is the locked test split's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

SplitName = Literal["train", "feedback", "test"]
CLOSED_BOOK, RAG = "closed_book", "rag"  # a question alone; a question with the passages retrieved for it


class Scores(BaseModel):
    """The share of right answers (by their fact checks) with its 95% Wilson interval, then the wording metrics: corpus
    means of each and their weighted `overall` (the blended score), all in [0, 1]."""

    exact_match: float
    token_f1: float
    bleu: float
    rouge_l: float
    overall: float
    fact_accuracy: float | None = None  # None: no example had fact checks (reports written before them)
    right: int | None = None
    judged: int | None = None  # examples with fact checks
    fact_accuracy_interval: tuple[float, float] | None = None
    # of the wrong answers asked with passages (rag), those whose passages state what the checks look for (the model
    # misread them) and those whose passages do not (retrieval missed); None in closed book
    reading_errors: int | None = None
    retrieval_misses: int | None = None


class CheckVerdict(BaseModel):
    """One fact check of an example and how the answer fared on it."""

    check: dict[str, Any]  # schemas.checks, as JSON
    passed: bool
    detail: str


class ExampleScore(BaseModel):
    """One held-out example: what was expected, what the model said, its verdict by the fact checks, and its wording
    scores."""

    example_id: str
    question: str
    expected: str
    got: str
    scores: dict[str, float]  # per metric
    overall: float
    right: bool | None = None  # every fact check passed; None when the example has none
    checks: list[CheckVerdict] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)  # the chunk ids it was asked with (rag mode)
    # the passages it was asked with state what its checks look for (facts.judge.passages_state); None: closed book,
    # or only yes/no and not_contains checks
    answer_in_passages: bool | None = None


class SplitResult(BaseModel):
    split: SplitName
    size: int
    scores: Scores
    examples: list[ExampleScore]


class Headline(BaseModel):
    """The locked test split's figures in the serving mode: the share of right answers first, the blended score beside
    it."""

    split: SplitName = "test"
    score: float  # the blended wording score (secondary)
    grade: str  # of the fact accuracy (of the blended score when there is none)
    mode: str = CLOSED_BOOK  # the mode the task serves in: rag when it has a knowledge base
    fact_accuracy: float | None = None
    fact_accuracy_interval: tuple[float, float] | None = None


class TrainLoss(BaseModel):
    split: SplitName = "train"
    mean: float | None  # None when no example's loss was finite


class BadCase(BaseModel):
    """A feedback example answered wrong (by its fact checks; below the blended threshold when it has none), or a
    training example whose loss stayed high."""

    example_id: str
    question: str
    expected: str
    got: str | None  # None for training examples (they are scored by loss, not answered)
    split: SplitName
    # empty_answer | wrong_polarity | wrong_number | states_a_wrong_value | missing_fact | too_long | wrong_content |
    # high_training_loss
    error_type: str
    scores: dict[str, float] | None = None
    overall: float | None = None
    loss: float | None = None
    right: bool | None = None
    checks: list[CheckVerdict] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)


class SuggestionGroup(BaseModel):
    label: str
    size: int


class Suggestion(BaseModel):
    """What the next round will do about one topic group of bad cases, structured and in plain words."""

    id: str
    kind: str
    split: SplitName
    error_type: str
    group: SuggestionGroup
    evidence_bad_case_ids: list[str]
    action: str
    text: str


class SplitComparison(BaseModel):
    split: SplitName
    score: float  # the other evaluation's blended score on this split
    delta: float  # this evaluation's blended score minus it
    fact_accuracy: float | None = None  # the other evaluation's share of right answers
    fact_accuracy_delta: float | None = None


class BadCaseFollowup(BaseModel):
    """Bad case -> the training examples made for it -> its score before and after the next round."""

    bad_case_id: str
    split: SplitName
    question: str
    before: float | None
    after: float | None
    delta: float | None
    targeted_training_examples: list[str]
    right_after: bool | None = None  # answered right in this round (it was a bad case: wrong, the round before)
    # grounded targeting: the chunks its new examples were generated from
    chunk_ids: list[str] = Field(default_factory=list)


class SideBySide(BaseModel):
    split: SplitName = "test"
    question: str
    expected: str
    base_answer: str | None
    tuned_answer: str
    base_right: bool | None = None
    tuned_right: bool | None = None


class RetrievalQuality(BaseModel):
    """How well retrieval (by the question alone) found the chunk that holds the answer, where that chunk is known."""

    split: SplitName
    k: int
    examples: int
    known: int  # examples whose supporting chunk was found (knowledge.grounding)
    recall_at_k: float | None  # share of the known ones retrieved in the top k
    mrr: float | None  # mean reciprocal rank over the known ones (0 when not retrieved)


class ExampleContext(BaseModel):
    context: list[str]  # the passages, in prompt order
    chunk_ids: list[str]
    supporting_chunk_id: str | None = None  # the chunk estimated to hold the answer (measurement only)


class RetrievedContexts(BaseModel):
    """The passages retrieved for each held-out question, with a knowledge base version, and how good retrieval was."""

    knowledge_base_id: str
    knowledge_base_version: int
    top_k: int
    examples: dict[str, ExampleContext]  # example id -> its passages
    retrieval: dict[str, RetrievalQuality]  # split -> quality


class EvaluationReport(BaseModel):
    """One iteration's evaluation (iteration 0 is the untuned base model), in every mode it was evaluated in.

    `splits` are the results in the serving mode (`headline.mode`): bad cases, comparisons and follow-ups use them."""

    iteration: int
    headline: Headline
    modes: dict[str, dict[str, SplitResult]]  # mode -> split (feedback, test) -> results
    # split -> retrieval quality (with a knowledge base)
    retrieval: dict[str, RetrievalQuality] = Field(default_factory=dict)
    knowledge_base_version: int | None = None
    train_loss: TrainLoss
    bad_cases: list[BadCase]
    suggestions: list[Suggestion]
    # "baseline" | "previous" -> split -> comparison
    comparison: dict[str, dict[str, SplitComparison]] = Field(default_factory=dict)
    bad_case_followup: list[BadCaseFollowup] = Field(default_factory=list)
    side_by_side: list[SideBySide] = Field(default_factory=list)
    adapter_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _closed_book_only(cls, data: Any) -> Any:
        """Reports written before the modes held one closed-book `splits`."""
        if isinstance(data, dict) and "splits" in data and "modes" not in data:
            data = {**{k: v for k, v in data.items() if k != "splits"}, "modes": {CLOSED_BOOK: data["splits"]}}
        return data

    @property
    def splits(self) -> dict[str, SplitResult]:
        return self.modes[self.headline.mode]

    def score(self, split: str, mode: str | None = None) -> float:
        """The blended wording score."""
        return self.modes[mode or self.headline.mode][split].scores.overall

    def accuracy(self, split: str, mode: str | None = None) -> float | None:
        """The share of right answers (None without fact checks)."""
        return self.modes[mode or self.headline.mode][split].scores.fact_accuracy

    def mode_scores(self) -> dict[str, dict[str, Scores]]:
        return {
            mode: {split: result.scores for split, result in results.items()} for mode, results in self.modes.items()
        }


# ---------------------------------------------------------------- the task report


class TaskInfo(BaseModel):
    task_id: str
    name: str | None = None
    mode: str | None = None
    model_name: str | None = None
    stop_reason: str | None = None
    parent_task_id: str | None = None  # an incremental task: the task it continues


class BaselineSummary(BaseModel):
    split: SplitName = "test"
    scores: Scores  # in the serving mode
    feedback_scores: Scores
    modes: dict[str, dict[str, Scores]] = Field(default_factory=dict)  # every mode the base model was evaluated in


class FinalSummary(BaseModel):
    split: SplitName = "test"
    score: float  # blended
    grade: str
    beats_baseline: bool  # by fact accuracy (by the blended score without fact checks)
    mode: str = CLOSED_BOOK
    fact_accuracy: float | None = None
    fact_accuracy_interval: tuple[float, float] | None = None
    iteration: int | None = Field(
        default=None,
        description="The iteration the task keeps, registers and reports as final: its best on the feedback split "
        "(core.iteration_choice); None in reports written before that choice, whose final is their last iteration",
    )
    because: str | None = Field(default=None, description="Why the task keeps that iteration")


class TrainingSummary(BaseModel):
    steps: int
    resumed_from_step: int
    seconds: float
    tokens_per_second: float
    useful_tokens: int
    device: str
    precision: str | None = Field(
        default=None, description="What the matrix products computed in: bf16 (autocast) or fp32 (ml.precision)"
    )
    continued_from: str | None = (
        None  # the adapter this training started from (the previous iteration's, or a parent task's)
    )
    masks: dict[str, Any] | None = Field(
        default=None,
        description="The loss masks: examples and conversations trained, assistant turns and tokens supervised, "
        "the supervised share of tokens, and the examples left out with why",
    )


class IterationReport(BaseModel):
    iteration: int
    headline: Headline
    scores: dict[str, Scores]  # feedback and test, in the serving mode
    modes: dict[str, dict[str, Scores]] = Field(default_factory=dict)  # every mode evaluated
    retrieval: dict[str, RetrievalQuality] = Field(default_factory=dict)
    knowledge_base_version: int | None = None
    comparison: dict[str, dict[str, SplitComparison]]
    bad_cases: int
    suggestions: list[str]
    bad_case_followup: list[BadCaseFollowup]
    training: TrainingSummary
    loss_curve: list[tuple[int, float]]
    adapter_key: str | None = None


class StaleRowNote(BaseModel):
    """A row of the task's dataset that a new version of a knowledge-base document contradicts (services.staleness)."""

    row_id: str
    question: str
    old_value: str
    new_value: str | None
    document: str
    document_version: int
    state: str  # stale | confirmed | corrected | excluded | removed, in the dataset's head when the report was made


class TaskReport(BaseModel):
    """Every iteration of a task against the base model, from bad case to score change."""

    task: TaskInfo
    baseline: BaselineSummary
    final: FinalSummary
    iterations: list[IterationReport]
    side_by_side: list[SideBySide]
    # the final iteration's wrong test answers, in the serving mode
    wrong_answers: list[ExampleScore] = Field(default_factory=list)
    # the rows of its dataset its knowledge base's new documents contradicted: left out of training and of its
    # splits while stale
    stale_rows: list[StaleRowNote] = Field(default_factory=list)

    def kept_iteration(self) -> IterationReport:
        """The iteration `final` describes: the one the task keeps (its last in reports written before that choice)."""
        return next((it for it in self.iterations if it.iteration == self.final.iteration), self.iterations[-1])


class StoredTaskReport(TaskReport):
    """A task report as the API serves it: with where its JSON and Markdown are stored."""

    report_path: str
    markdown_path: str


class AnswerList(BaseModel):
    """A page of one evaluation's answers (iteration 0: the base model), wrong ones first, with the split's scores."""

    task_id: str
    iteration: int
    split: SplitName
    mode: str
    scores: Scores
    items: list[ExampleScore]
    total: int  # answers matching the filter
    limit: int
    offset: int
