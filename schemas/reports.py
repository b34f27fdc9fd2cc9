"""The evaluation report of one iteration and the report of a whole task: typed, so the evaluator that writes
them, the report builder, the API that serves them and the demo that prints them agree on every field.

Every score names the split it was measured on; the headline is the locked test split's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SplitName = Literal["train", "feedback", "test"]


class Scores(BaseModel):
    """Corpus means of each metric, and the weighted overall score, all in [0, 1]."""

    exact_match: float
    token_f1: float
    bleu: float
    rouge_l: float
    overall: float


class ExampleScore(BaseModel):
    """One held-out example: what was expected, what the model said, and how that scored."""

    example_id: str
    question: str
    expected: str
    got: str
    scores: dict[str, float]  # per metric
    overall: float


class SplitResult(BaseModel):
    split: SplitName
    size: int
    scores: Scores
    examples: list[ExampleScore]


class Headline(BaseModel):
    split: SplitName = "test"
    score: float
    grade: str


class TrainLoss(BaseModel):
    split: SplitName = "train"
    mean: float | None  # None when no example's loss was finite


class BadCase(BaseModel):
    """A feedback example that scored below the threshold, or a training example whose loss stayed high."""

    example_id: str
    question: str
    expected: str
    got: str | None  # None for training examples (they are scored by loss, not answered)
    split: SplitName
    error_type: str  # empty_answer | too_long | wrong_content | high_training_loss
    scores: dict[str, float] | None = None
    overall: float | None = None
    loss: float | None = None


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
    score: float  # the other evaluation's score on this split
    delta: float  # this evaluation's score minus it


class BadCaseFollowup(BaseModel):
    """Bad case -> the training examples made for it -> its score before and after the next round."""

    bad_case_id: str
    split: SplitName
    question: str
    before: float | None
    after: float | None
    delta: float | None
    targeted_training_examples: list[str]


class SideBySide(BaseModel):
    split: SplitName = "test"
    question: str
    expected: str
    base_answer: str | None
    tuned_answer: str


class EvaluationReport(BaseModel):
    """One iteration's evaluation (iteration 0 is the untuned base model)."""

    iteration: int
    headline: Headline
    splits: dict[str, SplitResult]  # feedback and test
    train_loss: TrainLoss
    bad_cases: list[BadCase]
    suggestions: list[Suggestion]
    comparison: dict[str, dict[str, SplitComparison]] = Field(default_factory=dict)  # "baseline" | "previous" -> split -> comparison
    bad_case_followup: list[BadCaseFollowup] = Field(default_factory=list)
    side_by_side: list[SideBySide] = Field(default_factory=list)
    adapter_key: str | None = None

    def score(self, split: str) -> float:
        return self.splits[split].scores.overall


# ---------------------------------------------------------------- the task report


class TaskInfo(BaseModel):
    task_id: str
    name: str | None = None
    mode: str | None = None
    model_name: str | None = None
    stop_reason: str | None = None


class BaselineSummary(BaseModel):
    split: SplitName = "test"
    scores: Scores
    feedback_scores: Scores


class FinalSummary(BaseModel):
    split: SplitName = "test"
    score: float
    grade: str
    beats_baseline: bool


class TrainingSummary(BaseModel):
    steps: int
    resumed_from_step: int
    seconds: float
    tokens_per_second: float
    useful_tokens: int
    device: str


class IterationReport(BaseModel):
    iteration: int
    headline: Headline
    scores: dict[str, Scores]  # feedback and test
    comparison: dict[str, dict[str, SplitComparison]]
    bad_cases: int
    suggestions: list[str]
    bad_case_followup: list[BadCaseFollowup]
    training: TrainingSummary
    loss_curve: list[tuple[int, float]]
    adapter_key: str | None = None


class TaskReport(BaseModel):
    """Every iteration of a task against the base model, from bad case to score change."""

    task: TaskInfo
    baseline: BaselineSummary
    final: FinalSummary
    iterations: list[IterationReport]
    side_by_side: list[SideBySide]


class StoredTaskReport(TaskReport):
    """A task report as the API serves it: with where its JSON and Markdown are stored."""

    report_path: str
    markdown_path: str
